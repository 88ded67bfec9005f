//go:build !linux

package agent

// timerSlack is only known on Linux.
func timerSlack() int64 { return 0 }
