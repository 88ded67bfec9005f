package heuristics

// entry is one key's state in an lru, linked in order of last use.
type entry[S any] struct {
	key        string
	prev, next *entry[S]
	last       int64 // newest event time of the key (Unix ns)
	s          S
}

// lru is a map of per-key states bounded by max keys, with exact eviction
// of the least recently used key and expiry of idle keys from the cold end.
type lru[S any] struct {
	m          map[string]*entry[S]
	head, tail *entry[S] // head: most recently used
	max        int
}

func newLRU[S any](maxKeys int) *lru[S] {
	return &lru[S]{m: make(map[string]*entry[S]), max: maxKeys}
}

func (l *lru[S]) len() int { return len(l.m) }

func (l *lru[S]) unlink(e *entry[S]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (l *lru[S]) pushFront(e *entry[S]) {
	e.next = l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
}

// get returns the entry of key (looked up without allocating when key is
// built from a byte slice) and marks it used; nil when absent.
func (l *lru[S]) get(key []byte) *entry[S] {
	e := l.m[string(key)]
	if e != nil && l.head != e {
		l.unlink(e)
		l.pushFront(e)
	}
	return e
}

// add inserts a new key (absent) and reports whether a key was evicted to
// make room.
func (l *lru[S]) add(key string) (*entry[S], bool) {
	evicted := false
	if len(l.m) >= l.max && l.tail != nil {
		l.remove(l.tail)
		evicted = true
	}
	e := &entry[S]{key: key}
	l.m[key] = e
	l.pushFront(e)
	return e, evicted
}

// pushBack inserts a key at the cold end (used by Restore, which reads
// keys from the most to the least recently used).
func (l *lru[S]) pushBack(e *entry[S]) bool {
	if len(l.m) >= l.max {
		return false
	}
	l.m[e.key] = e
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	return true
}

func (l *lru[S]) remove(e *entry[S]) {
	l.unlink(e)
	delete(l.m, e.key)
}

// expire drops keys from the cold end whose newest event is before cutoff
// and returns how many it dropped. Keys are ordered by use, which follows
// event time closely, so the walk stops at the first fresh key.
func (l *lru[S]) expire(cutoff int64) uint64 {
	var n uint64
	for l.tail != nil && l.tail.last < cutoff {
		l.remove(l.tail)
		n++
	}
	return n
}

// each calls f from the most to the least recently used key.
func (l *lru[S]) each(f func(e *entry[S])) {
	for e := l.head; e != nil; e = e.next {
		f(e)
	}
}

// appendKey appends the key parts separated by '|'.
func appendKey(dst []byte, parts ...string) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, '|')
		}
		dst = append(dst, p...)
	}
	return dst
}
