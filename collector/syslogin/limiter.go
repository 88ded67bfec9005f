package syslogin

import (
	"net/netip"
	"sync"
	"time"
)

// maxSources bounds the per-source state kept by the limiter. Past it, idle
// sources are forgotten first; a flood of spoofed UDP source addresses
// cannot grow memory without bound.
const maxSources = 100_000

// logEvery is how often at most one source's drops or unknown-source
// messages are logged.
const logEvery = time.Minute

// source is what the intake remembers of one sending address: its token
// bucket and when it was last logged about.
type source struct {
	tokens  float64
	last    time.Time // last refill
	dropped int64     // drops since the last log line
	dropLog time.Time
	unknown int64 // unknown-source messages since the last log line
	unkLog  time.Time
}

// limiter is a token bucket per source address: rate tokens per second, up
// to burst; one message takes one token.
type limiter struct {
	rate, burst float64
	mu          sync.Mutex
	src         map[netip.Addr]*source
	sweep       time.Time
}

func newLimiter(rate float64, burst float64) *limiter {
	return &limiter{rate: rate, burst: burst, src: map[netip.Addr]*source{}}
}

// get returns the state of addr, creating it full. Called with mu held.
func (l *limiter) get(addr netip.Addr, now time.Time) *source {
	s, ok := l.src[addr]
	if ok {
		return s
	}
	if len(l.src) >= maxSources || now.Sub(l.sweep) > 10*time.Minute {
		l.forgetIdle(now)
	}
	s = &source{tokens: l.burst, last: now}
	if len(l.src) < maxSources {
		l.src[addr] = s
	}
	return s
}

// forgetIdle drops sources whose bucket has refilled and that have nothing
// left to log. Called with mu held.
func (l *limiter) forgetIdle(now time.Time) {
	l.sweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, s := range l.src {
		if now.Sub(s.last) > full && now.Sub(s.last) > logEvery && s.dropped == 0 && s.unknown == 0 {
			delete(l.src, a)
		}
	}
}

// allow takes a token for addr. When it refuses, report is the number of
// drops to log now (0: logged less than a minute ago).
func (l *limiter) allow(addr netip.Addr, now time.Time) (ok bool, report int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.get(addr, now)
	if el := now.Sub(s.last); el > 0 {
		s.tokens = min(l.burst, s.tokens+el.Seconds()*l.rate)
		s.last = now
	}
	if s.tokens >= 1 {
		s.tokens--
		return true, 0
	}
	s.dropped++
	if now.Sub(s.dropLog) >= logEvery {
		n := s.dropped
		s.dropped, s.dropLog = 0, now
		return false, n
	}
	return false, 0
}

// unknownSource counts a message from an address no device covers and
// returns how many to log now (0: logged less than a minute ago).
func (l *limiter) unknownSource(addr netip.Addr, now time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.get(addr, now)
	s.unknown++
	if now.Sub(s.unkLog) >= logEvery {
		n := s.unknown
		s.unknown, s.unkLog = 0, now
		return n
	}
	return 0
}
