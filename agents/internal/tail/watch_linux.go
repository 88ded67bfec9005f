//go:build linux

package tail

import (
	"errors"
	"fmt"
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
// into a signal for Run.
//
// The inotify descriptor is deliberately not in Go's network poller: a
// descriptor there wakes a thread at every event the kernel queues (every
// write to a busy file, unless it merges with the previous event), whether
// anybody reads it or not. Instead, while the files are quiet Run arms the
// watcher, whose goroutine waits in poll(2) (one blocked thread, woken by
// the first event), drains the queue and signals C. While lines keep coming
// Run reads on a timer and only drains the queue at the start of each round
// (Drain), so a busy file costs no wake-up at all beyond the round's timer.
type watcher struct {
	fd     int // inotify, non-blocking
	efd    int // eventfd that interrupts the poll at Close
	events chan struct{}
	arm    chan struct{}
	stop   chan struct{}
	dead   chan struct{} // closed when the goroutine gave up (poll failed)
	err    error         // why, once dead is closed
	wg     sync.WaitGroup
	buf    []byte // Drain's buffer (Run's goroutine only)
}

// newWatcher starts a watcher, or returns an error when inotify is not
// available (the source then polls at PollInterval).
func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &watcher{
		fd:     fd,
		efd:    efd,
		events: make(chan struct{}, 1),
		arm:    make(chan struct{}, 1),
		stop:   make(chan struct{}),
		dead:   make(chan struct{}),
		buf:    make([]byte, 16<<10),
	}
	w.wg.Add(1)
	go w.run()
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

func (w *watcher) run() {
	defer w.wg.Done()
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.efd), Events: unix.POLLIN}} //nolint:gosec // G115: descriptors are small
	buf := make([]byte, 16<<10)
	for {
		select {
		case <-w.arm:
		case <-w.stop:
			return
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			w.rearm()
			continue
		}
		select {
		case <-w.stop:
			return
		default:
		}
		if err == nil && fds[0].Revents&^unix.POLLIN != 0 {
			err = fmt.Errorf("poll on the inotify descriptor: revents %#x", fds[0].Revents)
		}
		if err != nil {
			w.err = err
			close(w.dead)
			return
		}
		// The events are not parsed: any change in a watched directory
		// means "look now"; the round finds out what changed.
		drain(w.fd, buf)
		select {
		case w.events <- struct{}{}:
		default:
		}
	}
}

func (w *watcher) rearm() {
	select {
	case w.arm <- struct{}{}:
	default:
	}
}

// maxEvent is the size of the largest inotify event.
const maxEvent = unix.SizeofInotifyEvent + unix.NAME_MAX + 1

// drain reads the inotify queue until it is empty: a read that left room
// for another event took them all.
func drain(fd int, buf []byte) {
	for {
		if n, err := unix.Read(fd, buf); err != nil || n <= len(buf)-maxEvent {
			return
		}
	}
}

// C is signalled when something changed while the watcher was armed.
func (w *watcher) C() <-chan struct{} { return w.events }

// Arm makes the watcher wait for the next event (if it is not waiting
// already); C is signalled when it comes, or at once if events are queued.
func (w *watcher) Arm() { w.rearm() }

// Drain discards the events queued so far: the round about to start covers
// them. Run calls it at the start of each round.
func (w *watcher) Drain() { drain(w.fd, w.buf) }

// Dead is closed when the watcher stopped working; Err then says why.
func (w *watcher) Dead() <-chan struct{} { return w.dead }

// Err is why the watcher stopped (after Dead is closed).
func (w *watcher) Err() error { return w.err }

// Close stops the watcher.
func (w *watcher) Close() {
	close(w.stop)
	var one [8]byte
	one[0] = 1 // native endianness does not matter: any non-zero count wakes poll
	_, _ = unix.Write(w.efd, one[:])
	w.wg.Wait()
	_ = unix.Close(w.fd)
	_ = unix.Close(w.efd)
}
