package intake

import (
	"math"
	"sync"
	"time"
)

// buckets is a set of token buckets keyed by agent id or client address.
// Idle buckets are forgotten, so memory stays bounded by the active keys.
type buckets struct {
	mu    sync.Mutex
	rate  float64 // tokens per second
	burst float64
	m     map[string]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newBuckets(rate, burst float64) *buckets {
	return &buckets{rate: rate, burst: burst, m: map[string]*bucket{}}
}

// take removes one token for key; when none is left it returns false and
// how long until one is.
func (b *buckets) take(key string, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) > time.Minute {
		full := time.Duration(b.burst / b.rate * float64(time.Second))
		for k, v := range b.m {
			if now.Sub(v.last) > full {
				delete(b.m, k)
			}
		}
		b.swept = now
	}
	bk, ok := b.m[key]
	if !ok {
		bk = &bucket{tokens: b.burst, last: now}
		b.m[key] = bk
	}
	if el := now.Sub(bk.last); el > 0 { // a clock stepping back refills nothing
		bk.tokens = math.Min(b.burst, bk.tokens+el.Seconds()*b.rate)
		bk.last = now
	}
	if bk.tokens >= 1 {
		bk.tokens--
		return true, 0
	}
	return false, time.Duration((1 - bk.tokens) / b.rate * float64(time.Second))
}

// retryAfterSeconds rounds a wait up to whole seconds (at least 1).
func retryAfterSeconds(d time.Duration) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
