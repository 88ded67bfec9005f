//go:build linux

package tail

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// watchMask is what wakes the source in a watched directory: data
// appended or a file truncated (IN_MODIFY), files created, removed or
// renamed (rotation), attribute changes (permissions fixed), and the
// directory itself going away.
const watchMask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// watcher turns inotify events on the directories of the followed files
// into a signal for Run. After each signal it waits for resume (Run's next
// round) before reading the inotify queue again, so a busy file costs one
// wake-up per round, not one per write.
type watcher struct {
	fd     int
	f      *os.File // fd in Go's poller
	events chan struct{}
	resume chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
}

// newWatcher starts a watcher, or returns an error when inotify is not
// available (the source then polls at PollInterval).
func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &watcher{
		fd:     fd,
		f:      os.NewFile(uintptr(fd), "inotify"),
		events: make(chan struct{}, 1),
		resume: make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	w.wg.Add(1)
	go w.read()
	return w, nil
}

// add watches dir (again: watching a directory already watched, or
// recreated since, is fine).
func (w *watcher) add(dir string) error {
	if _, err := unix.InotifyAddWatch(w.fd, dir, watchMask); err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	return nil
}

func (w *watcher) read() {
	defer w.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		// The events are not parsed: any change in a watched directory
		// means "look now"; the round finds out what changed.
		if _, err := w.f.Read(buf); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			// Unexpected: fall back to the timer alone.
			return
		}
		select {
		case w.events <- struct{}{}:
		default:
		}
		select {
		case <-w.resume:
		case <-w.stop:
			return
		}
	}
}

// C is signalled when something changed.
func (w *watcher) C() <-chan struct{} { return w.events }

// Resume lets the watcher read the next events; Run calls it after a round.
func (w *watcher) Resume() {
	select {
	case w.resume <- struct{}{}:
	default:
	}
}

// Close stops the watcher.
func (w *watcher) Close() {
	close(w.stop)
	_ = w.f.Close()
	w.wg.Wait()
}
