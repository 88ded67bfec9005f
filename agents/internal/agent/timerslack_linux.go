//go:build linux

package agent

import (
	"sync"

	"golang.org/x/sys/unix"
)

// timerSlack returns the timer slack of the process (prctl(2),
// PR_GET_TIMERSLACK), which every thread inherits from whoever started the
// agent (systemd's TimerSlackNSec=) and which the agent never changes: it is
// read once, not at every status write. 0 when it cannot be read.
var timerSlack = sync.OnceValue(func() int64 {
	n, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0
	}
	return int64(n)
})
