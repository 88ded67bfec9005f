package engine

import (
	"fmt"
	"sync/atomic"
)

// Holder holds the current bundle for hot reload: readers take the bundle
// with Load (lock-free); Reload swaps in a new one only when it compiled.
type Holder struct {
	cur atomic.Pointer[Bundle]
}

// NewHolder returns a holder of b (which may be nil until the first Reload).
func NewHolder(b *Bundle) *Holder {
	h := &Holder{}
	if b != nil {
		h.cur.Store(b)
	}
	return h
}

// Load returns the current bundle.
func (h *Holder) Load() *Bundle { return h.cur.Load() }

// Reload builds a new bundle with build. When build fails, the current
// bundle stays in place and the error (a *CompileError or *sigma.ParseError
// naming the rule and its position, wrapped) is returned.
func (h *Holder) Reload(build func() (*Bundle, error)) error {
	b, err := build()
	if err != nil {
		return fmt.Errorf("reloading rules (keeping the previous set): %w", err)
	}
	if b == nil {
		return fmt.Errorf("reloading rules (keeping the previous set): no bundle built")
	}
	h.cur.Store(b)
	return nil
}

// Evaluator returns an evaluator for the current bundle, reusing prev when
// the bundle has not changed since prev was made. Call it per event (or
// batch) to pick up reloads.
func (h *Holder) Evaluator(prev *Evaluator) *Evaluator {
	b := h.cur.Load()
	if b == nil {
		return nil
	}
	if prev != nil && prev.b == b {
		return prev
	}
	return b.NewEvaluator()
}
