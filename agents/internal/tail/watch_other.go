//go:build !linux

package tail

import "errors"

// watcher is only implemented on Linux (inotify); elsewhere the source
// polls at PollInterval.
type watcher struct{}

func newWatcher() (*watcher, error) { return nil, errors.New("no inotify on this system") }

func (w *watcher) add(string) error      { return nil }
func (w *watcher) C() <-chan struct{}    { return nil }
func (w *watcher) Arm()                  {}
func (w *watcher) Drain()                {}
func (w *watcher) Dead() <-chan struct{} { return nil }
func (w *watcher) Err() error            { return nil }
func (w *watcher) Close()                {}
