//go:build linux

package agent

import "golang.org/x/sys/unix"

// timerSlack returns the timer slack of the calling thread (prctl(2),
// PR_GET_TIMERSLACK), which the agent's threads inherit from whoever started
// it (systemd's TimerSlackNSec=); 0 when it cannot be read.
func timerSlack() int64 {
	n, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0
	}
	return int64(n)
}
