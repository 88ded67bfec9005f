package correlation

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// keyRecordOf builds a key's state from fuzz inputs: items when nSteps is
// 0, else nSteps steps.
func keyRecordOf(k1, k2, id, v string, t, f float64, nSteps uint8) (*state, []string) {
	s := &state{last: int64(t), touched: int64(t) / 3, fired: -int64(t), start: int64(f)}
	if n := int(nSteps % 6); n > 0 {
		s.ext = newSteps(n)
		st := s.steps()
		for i := range st {
			st[i] = step{start: int64(i) * int64(t), end: int64(i) - 1, id: id}
		}
	} else {
		*s.itemList() = []item{{t: int64(t), id: id, v: v, f: f}, {t: 1}}
	}
	return s, []string{k1, k2}
}

// The hand-written key record decodes to the record encoding/json writes
// for the same key (Restore reads it with encoding/json).
func FuzzKeyRecord(f *testing.F) {
	f.Add("203.0.113.7", "root", "a0f2d511ef65742dfcd5925b5a17e304", "", 1795411505871569437.0, 0.0, uint8(0))
	f.Add("x\"y\\z", "<&>", "\u2028\x00\xff", "é", -1.0, 3.5e300, uint8(2))
	f.Add("", "", "", "v", 0.0, math.Copysign(0, -1), uint8(5))
	f.Fuzz(func(t *testing.T, k1, k2, id, v string, tm, fl float64, nSteps uint8) {
		s, key := keyRecordOf(k1, k2, id, v, tm, fl, nSteps)
		got, err := appendKeyRecord(nil, "rule-1", key, s)
		want := snapRecord{Kind: "key", Rule: "rule-1", Key: key, Last: s.last, Touched: s.touched, Fired: s.fired, Start: s.start}
		for _, it := range s.items() {
			want.Items = append(want.Items, snapItem{T: it.t, ID: it.id, V: it.v, F: it.f})
		}
		for _, p := range s.steps() {
			want.Steps = append(want.Steps, snapStep{Start: p.start, End: p.end, ID: p.id})
		}
		ref, refErr := json.Marshal(want)
		if (err != nil) != (refErr != nil) {
			t.Fatalf("hand-written error %v, encoding/json error %v", err, refErr)
		}
		if err != nil {
			return
		}
		if len(got) == 0 || got[len(got)-1] != '\n' {
			t.Fatalf("record %q does not end a line", got)
		}
		var a, b snapRecord
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("hand-written record %q does not decode: %v", got, err)
		}
		if err := json.Unmarshal(ref, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("decoded differently:\nhand %q\njson %q", got, ref)
		}
	})
}
