// Package source defines the agent's log sources as plugins: the Source
// interface every source implements (files, later the systemd journal and
// packet summaries), the Record they emit, and a registry from a kind name
// ("file") to a factory, in the manner of crowdsec's acquisition registry.
// A source package registers itself in init:
//
//	func init() { source.Register("file", New) }
//	var _ source.Source = (*FileSource)(nil)
package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"

	"github.com/csirt-toscana/platform/internal/envelope"
)

// Record is one line (or summary) read by a source.
type Record struct {
	Stream string // envelope stream id; sequence numbers are per stream
	Origin string // where it was read (a file path), for logs and status; not shipped
	Time   time.Time
	Kind   envelope.Kind
	Flags  envelope.Flags
	Data   []byte // owned by the receiver
	Cursor Cursor // give back to Source.Ack once the record is durable
}

// Cursor is a source-defined position after a record. Origin and Offset
// are used by file sources (which file, byte offset after the line); Token
// by sources with opaque positions (a journal cursor).
type Cursor struct {
	Origin uint64
	Offset int64
	Token  string
}

// State of one input of a source (one file).
type State string

// States reported in Status.
const (
	StateReading  State = "reading"  // open, following
	StateWaiting  State = "waiting"  // configured but absent: fine, it may appear
	StateDraining State = "draining" // renamed away or removed: reading what is left
	StateError    State = "error"    // cannot be read; Err says why; retried
)

// Status describes one input of a source, for `csirt-agent status`.
type Status struct {
	Source string
	Path   string
	State  State
	Err    string    // why, when State is StateError or StateWaiting
	Since  time.Time // when the state began
	Read   int64     // offset read up to (files)
	Acked  int64     // offset acknowledged and checkpointed (files)
}

// Source reads records and checkpoints positions it is told are durable.
type Source interface {
	// Run reads until ctx is done, sending records on out; it never
	// closes out. It returns nil when ctx ends and an error only when
	// the source cannot work at all. Problems with one input (a file
	// vanishing, unreadable, replaced by a directory) are logged, shown
	// in Status, retried, and do not stop the others. Run is called once.
	Run(ctx context.Context, out chan<- Record) error
	// Ack records that the records carrying the given cursors, and every
	// earlier record of the same origin, are durable downstream (Kafka
	// acknowledged them). The source checkpoints only acknowledged
	// positions. It may be called concurrently with Run and after Run
	// returned. Unknown or stale cursors are ignored.
	Ack(cursors ...Cursor) error
	// Status describes each input; it is safe to call at any time.
	Status() []Status
}

// A source holding state files beyond Run (a checkpoint) also implements
// io.Closer: the agent calls Close once Run returned and the last Ack was
// made, before a source of the same name is built again.

// SpoolRef names the spool entry holding acknowledged records: the spool's
// run (random per agent start) and the entry id (see spool.Mark).
type SpoolRef struct {
	Run string
	ID  uint64
}

// SpoolAcker is implemented by sources that can checkpoint positions whose
// spool entry is not yet durable (the spool fsyncs in groups). AckSpooled
// is Ack, plus the spool entry that holds the records: the source keeps
// it with its checkpoint, calls Deps.Spool.Sync before it fsyncs the
// checkpoint, and after a power loss ignores a checkpoint whose entry
// Deps.Spool.Covers says is gone (docs/agent.md, "Power loss"). Sources
// that do not implement it are acknowledged only once the entry is
// durable.
type SpoolAcker interface {
	AckSpooled(ref SpoolRef, cursors ...Cursor) error
}

// RoundNotifier is implemented by sources that read in rounds (a poll of
// their files): after a round that delivered records, with nothing more
// waiting to be read, they call the function given to NotifyRounds, from
// Run's goroutine and after the round's last record was sent. A batcher
// then sends what it holds at once instead of waiting for its linger
// timer: lower latency and one wake-up less per batch (docs/agent.md,
// "Cores"). NotifyRounds is called before Run.
type RoundNotifier interface {
	NotifyRounds(done func())
}

// SpoolDeps tell a SpoolAcker about the spool. The zero value means no
// spool (Ack is only called for durable records).
type SpoolDeps struct {
	// Sync makes every spool entry appended so far durable.
	Sync func() error
	// Covers reports whether the entry a SpoolRef names is still in the
	// spool, or left it acknowledged (spool.Mark.Covers).
	Covers func(run string, id uint64) bool
}

// Deps are what the agent gives every source.
type Deps struct {
	Logger   logrus.FieldLogger // default: discard
	StateDir string             // where a source keeps its checkpoints
	Now      func() time.Time   // default time.Now
	Spool    SpoolDeps          // for SpoolAcker sources; zero: none
}

// WithDefaults fills in the zero fields.
func (d Deps) WithDefaults() Deps {
	if d.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		d.Logger = l
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// Factory builds a source named name (unique in the agent's config) from
// its configuration. decode strictly decodes the source's configuration
// section into a struct (unknown keys are errors).
type Factory func(name string, decode func(any) error, deps Deps) (Source, error)

// Registry maps a source kind to its factory. The zero value is ready.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// Register adds a kind. It panics on an empty or duplicate kind: that is a
// programming error found at start-up.
func (r *Registry) Register(kind string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kind == "" || f == nil {
		panic("source: Register with an empty kind or nil factory")
	}
	if _, dup := r.factories[kind]; dup {
		panic("source: kind " + kind + " registered twice")
	}
	if r.factories == nil {
		r.factories = map[string]Factory{}
	}
	r.factories[kind] = f
}

// New builds a source of the given kind.
func (r *Registry) New(kind, name string, decode func(any) error, deps Deps) (Source, error) {
	r.mu.RLock()
	f, ok := r.factories[kind]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("source %q: unknown kind %q (known: %v)", name, kind, r.Kinds())
	}
	s, err := f(name, decode, deps.WithDefaults())
	if err != nil {
		return nil, fmt.Errorf("source %q (%s): %w", name, kind, err)
	}
	return s, nil
}

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.factories))
	for k := range r.factories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Default is the registry source packages register into.
var Default = &Registry{}

// Register adds a kind to Default.
func Register(kind string, f Factory) { Default.Register(kind, f) }

// StrictYAML returns a decode function for a Factory that decodes b
// strictly: unknown keys are errors.
func StrictYAML(b []byte) func(any) error {
	return func(v any) error {
		d := yaml.NewDecoder(bytes.NewReader(b))
		d.KnownFields(true)
		if err := d.Decode(v); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("decoding configuration: %w", err)
		}
		return nil
	}
}
