package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// compareDecoders decodes data with Decode and with the old decoder (the
// oracle, oracle_test.go): both must fail, with a *FieldError from both or
// from neither, or both succeed with deeply equal events.
func compareDecoders(tb testing.TB, data []byte) {
	tb.Helper()
	got, err := Decode(data)
	want, werr := oracleDecode(data)
	if (err == nil) != (werr == nil) {
		tb.Fatalf("decoders disagree on %q:\nstreaming: %v (%v)\noracle:    %v (%v)", data, got, err, want, werr)
	}
	if err != nil {
		var fe, wfe *FieldError
		if errors.As(err, &fe) != errors.As(werr, &wfe) {
			tb.Fatalf("decoders disagree on the kind of error for %q:\nstreaming: %v\noracle:    %v", data, err, werr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("decoders disagree on %q:\nstreaming: %s\noracle:    %s", data, describe(got), describe(want))
	}
}

// describe prints an event with the Go types of its values.
func describe(e Event) string {
	var b strings.Builder
	for _, k := range sortedKeys(e) {
		fmt.Fprintf(&b, "\n  %q: %T %#v", k, e[k], e[k])
	}
	return b.String()
}

func sortedKeys(e Event) []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// differentialSeeds are the shapes the two decoders must agree on; they
// are also in the committed corpus of FuzzDecodeDifferential.
var differentialSeeds = []string{
	// nested, dotted and mixed
	`{"source":{"ip":"10.0.0.1","port":"22"},"tags":"one"}`,
	`{"source.ip":"10.0.0.1","source.port":22,"tags":["one"]}`,
	`{"event":{"category":["network"],"type":"connection"},"event.dataset":"flow","source.ip":"10.0.0.1","source":{"port":1234}}`,
	`{"source.ip":"10.0.0.1","source":{"ip":"10.0.0.2"}}`,
	`{"a":{"b.c":1},"a.b":{"c":2}}`,
	`{"":{"b":1},"b":2}`,
	`{"":1,"a":{"":2},".":3,"a.":{"b":4}}`,
	`{"source":{"ip.x":1},"event":{"original":"<html>&amp;"}}`,
	` { "a" : [ 1 , 2 ] , "b" : { } , "c" : { "d" : { } } } `,
	// nulls
	`{"a.b":null,"a":{"b":1}}`,
	`{"source":{"ip":null},"source.ip":"10.0.0.1","tags":null,"x":null}`,
	`{"@timestamp":null,"related.ip":null,"user":{"name":null}}`,
	// duplicate names: the last one wins
	`{"source.port":"http","source.port":22}`,
	`{"a":{"b":1},"a.c":2,"a":{"d":3}}`,
	`{"a":{"b":1},"a.b":2,"a":{"d":3}}`,
	`{"a":1,"a":null}`,
	`{"a":{"b":1},"a":{}}`,
	`{"x":[{"k":1,"k":2}],"y":[{"k":{"a":1,"a":[2]}}]}`,
	"{\"x\xfe\":1,\"x\xff\":2}",
	`{"x\u00e9":1,"xé":2}`,
	// numbers
	`{"source.port":9223372036854775807,"destination.port":-9223372036854775808}`,
	`{"source.port":9223372036854775808}`,
	`{"x":1e400}`,
	`{"x":[1e400,-0,1E-400,0.10],"y":[{"n":1e400,"m":1.0}]}`,
	`{"source.bytes":1e3,"destination.bytes":-0.0,"network.bytes":2.0E1}`,
	`{"network.bytes":1.5}`,
	`{"x":123456789012345678901234567890,"y":-9223372036854775808,"z":1E-400,"w":-0,"v":0.1}`,
	`{"process.pid":-9223372036854775808.0}`,
	`{"process.pid":9223372036854775807.0}`,
	`{"process.pid":1e19}`,
	`{"event.severity":"0x10"}`,
	`{"event.severity":" 1"}`,
	`{"event.severity":"+1","source.port":"-0","destination.port":"00012"}`,
	`{"source.port":true}`,
	`{"dns.id":1e2,"user.id":1000,"labels.entity_nis2":true,"process.args":false}`,
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":NaN}`, `{"a":Infinity}`,
	// strings and escapes
	`{"user":{"name":"\u00e9\ud83d\ude00\ud800x\udc00"},"m\u00e9ssage":"a\u0000b","\u0073ource.ip":"::1"}`,
	`{"url.path":"\/a\/b\t\"q\"\\","message":"\ud800\ud800\udbff\udfff"}`,
	"{\"message\":\"a\xffb\",\"user.name\":\"\xc3\x28\",\"x\":[\"\xe2\x82\"]}",
	"{\"a\":\"\x01\"}",
	"\xef\xbb\xbf{}",
	`{"message":"\u2028\u2029 <b>"}`,
	// registered fields of every type
	`{"@timestamp":"2026-11-02T08:30:01.123456789+02:00","event.start":"2026-11-02T08:30:01Z"}`,
	`{"event.end":"2026-11-02 08:30:01Z"}`,
	`{"@timestamp":12}`,
	`{"@timestamp":{"a":1}}`,
	`{"user":{"name":{"first":"x"}}}`,
	`{"related":{"ip":["10.0.0.1","nope"]}}`,
	`{"related.ip":["::1","10.0.0.1"],"tags":[],"event.category":"authentication","dns.answers.ttl":[60,"70",true]}`,
	`{"related.ip":[null]}`, `{"tags":[["a"]]}`, `{"tags":[{}]}`, `{"host.ip":[1]}`, `{"related.ip":"true"}`, `{"related.ip":true}`,
	`{"source.ip":12}`, `{"source.ip":"fe80::1%eth0"}`, `{"source.port":[1]}`, `{"source.port":{}}`,
	// unregistered values
	`{"winlog":{"event_id":4688,"ratio":0.5,"list":[1,"a",true,null,1.50],"objs":[{"b":1,"a":"<&>"},[null]],"empty":[],"nulls":[null]}}`,
	`{"x":[1,[2,[3]],{"z":{"y":null}}]}`,
	`{"x":true,"y":false,"z":"s"}`,
	// trailing data and documents that are not objects
	`{"a":1}}`, `{"a":1} ]`, `{"a":1} x`, `{"a":1}{}`, ` {"a":1} `, "{\"a\":1}\n\t", `{"a":1} "`,
	`null`, `null x`, `[]`, `"x"`, `1`, ``, ` `, `{`, `{"a":}`, `{"a" 1}`, `{,}`, `{"a":1,}`, `{"a":[1,]}`, `{"a":{"b":1}`,
	`{"source.port":"http"} x`, `{"source.port":"http","a":[}`,
	// nesting
	strings.Repeat(`{"a":`, MaxNesting+1) + `1` + strings.Repeat(`}`, MaxNesting+1),
	strings.Repeat(`{"a":`, MaxNesting+2) + `1` + strings.Repeat(`}`, MaxNesting+2),
	strings.Repeat(`{"a":`, MaxNesting+1) + `{}` + strings.Repeat(`}`, MaxNesting+1),
}

func TestDecodeMatchesOracle(t *testing.T) {
	for _, s := range differentialSeeds {
		compareDecoders(t, []byte(s))
	}
}

// TestDecodeDeepLists checks the tokenizer's depth limit against
// encoding/json's: 10000 nested arrays and objects are read, 10001 are not.
func TestDecodeDeepLists(t *testing.T) {
	for _, n := range []int{9999, 10000} {
		deep := `{"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
		compareDecoders(t, []byte(deep))
	}
	_, err := Decode([]byte(`{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`))
	if err != nil {
		t.Fatalf("9999 nested lists in an object: %v", err)
	}
	_, err = Decode([]byte(`{"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`))
	if err == nil {
		t.Fatal("10001 levels of nesting accepted")
	}
}

// TestDecodeFieldOfError checks that the streaming decoder names the same
// field as the old one where only one field is wrong.
func TestDecodeFieldOfError(t *testing.T) {
	for _, in := range []string{
		`{"source":{"ip":"not-an-ip"},"host.name":"a"}`,
		`{"source.port":"http"}`,
		`{"source.port":1.5}`,
		`{"process.pid":1e19}`,
		`{"@timestamp":"yesterday"}`,
		`{"@timestamp":12}`,
		`{"user":{"name":{"first":"x"}}}`,
		`{"source.ip":"10.0.0.1","source":{"ip":"10.0.0.2"}}`,
		`{"related":{"ip":["10.0.0.1","nope"]}}`,
		`{"winlog":{"x":1e400}}`,
		`{"tags":[null]}`,
		strings.Repeat(`{"a":`, MaxNesting+2) + `1` + strings.Repeat(`}`, MaxNesting+2),
	} {
		_, err := Decode([]byte(in))
		_, werr := oracleDecode([]byte(in))
		var fe, wfe *FieldError
		if !errors.As(err, &fe) || !errors.As(werr, &wfe) {
			t.Fatalf("%s: want field errors, got %v and (oracle) %v", in, err, werr)
		}
		if *fe != *wfe {
			t.Errorf("%s: got %v, the old decoder gave %v", in, fe, wfe)
		}
	}
}

// TestDecodeNullNeverConflicts pins the one documented difference: a null
// member is dropped before the "given twice" check, whatever the order.
func TestDecodeNullNeverConflicts(t *testing.T) {
	for _, in := range []string{
		`{"a.b":null,"a":{"b":1}}`,
		`{"a":{"b":1},"a.b":null}`,
		`{"source":{"ip":"10.0.0.1"},"source.ip":null}`,
	} {
		e, err := Decode([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if len(e) != 1 {
			t.Fatalf("%s: got %v, want one field", in, e)
		}
	}
}

// TestDecodeDuplicateNames: as encoding/json decoding into a map, the last
// member of a name wins, replacing the whole earlier value.
func TestDecodeDuplicateNames(t *testing.T) {
	e, err := Decode([]byte(`{"a":{"b":1},"a.c":2,"a":{"d":3},"source.port":"http","source.port":22}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Event{"a.c": int64(2), "a.d": int64(3), "source.port": int64(22)}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("got %s, want %s", describe(e), describe(want))
	}
}

// FuzzDecodeDifferential runs the streaming decoder and the old one on the
// same bytes: both fail, or both succeed with deeply equal events.
func FuzzDecodeDifferential(f *testing.F) {
	for _, s := range differentialSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareDecoders(t, data)
	})
}

// TestDecodeSharedValues decodes more distinct keyword values than a
// decoder keeps, so that its cache of values is emptied and refilled, and
// checks every event against the old decoder.
func TestDecodeSharedValues(t *testing.T) {
	for i := 0; i < 3*maxSharedValues; i++ {
		doc := fmt.Sprintf(`{"host":{"name":"host-%d"},"event.kind":"event","event.category":["c%d","network"],"user.name":"u%d"}`, i, i%7, i%3000)
		compareDecoders(t, []byte(doc))
	}
}
