package correlation

// keyStore holds the state of one correlation's group keys. Its map is
// keyed by an array as long as the rule's group-by (1, 2 or 4 strings), so a
// one-field rule pays 16 bytes of key per map slot, not 64.
type keyStore interface {
	get(k *Key) *state
	put(k *Key, s *state)
	del(k *Key)
	len() int
	// each calls f for every key until f returns false. f may delete the
	// key it is given.
	each(f func(k Key, s *state) bool)
}

type store[K comparable] struct {
	m    map[K]*state
	to   func(*Key) K
	from func(K) Key
}

func (s *store[K]) get(k *Key) *state    { return s.m[s.to(k)] }
func (s *store[K]) put(k *Key, v *state) { s.m[s.to(k)] = v }
func (s *store[K]) del(k *Key)           { delete(s.m, s.to(k)) }
func (s *store[K]) len() int             { return len(s.m) }
func (s *store[K]) each(f func(Key, *state) bool) {
	for k, v := range s.m {
		if !f(s.from(k), v) {
			return
		}
	}
}

// newStore returns a key store for a rule with n group-by fields.
func newStore(n int) keyStore {
	switch {
	case n <= 1:
		return &store[[1]string]{m: map[[1]string]*state{},
			to:   func(k *Key) [1]string { return [1]string{k[0]} },
			from: func(a [1]string) Key { return Key{a[0]} }}
	case n == 2:
		return &store[[2]string]{m: map[[2]string]*state{},
			to:   func(k *Key) [2]string { return [2]string{k[0], k[1]} },
			from: func(a [2]string) Key { return Key{a[0], a[1]} }}
	}
	return &store[Key]{m: map[Key]*state{},
		to:   func(k *Key) Key { return *k },
		from: func(a Key) Key { return a }}
}
