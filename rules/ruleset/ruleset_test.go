package ruleset_test

import (
	"testing"
	"testing/fstest"
	"time"

	"github.com/csirt-toscana/platform/rules/ruleset"
)

const rules = `title: SSH failed password
id: r-fail
name: ssh_fail
logsource: {product: linux, service: sshd}
detection:
  k: ['Failed password']
  condition: k
---
title: three failures
id: c-bf
correlation:
  type: event_count
  rules: [ssh_fail]
  group-by: [source.ip]
  timespan: 5m
  condition: {gte: 3}
`

func TestLoadAndRun(t *testing.T) {
	fsys := fstest.MapFS{"a/r.yml": {Data: []byte(rules)}, "b/r.yml": {Data: []byte(rules[:len(rules)/2])}}
	// b holds a truncated copy: a parse error unless skipped.
	if _, err := ruleset.Load(fsys, []string{"a", "b"}, ruleset.Options{}); err == nil {
		t.Fatal("bad file accepted")
	}
	set, err := ruleset.Load(fsys, []string{"a"}, ruleset.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := set.NewRunner()
	if err != nil {
		t.Fatal(err)
	}
	var matches, alerts int
	for i := 0; i < 3; i++ {
		e, err := ruleset.DecodeEvent([]byte(`{"@timestamp":"2026-01-01T10:00:0` + string(rune('0'+i)) + `Z","event":{"dataset":"sshd"},"source":{"ip":"192.0.2.1"},"message":"Failed password for root"}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := e["@timestamp"].(time.Time); !ok {
			t.Fatalf("@timestamp not decoded as a time: %T", e["@timestamp"])
		}
		ms, as := run.Process(e)
		matches += len(ms)
		alerts += len(as)
	}
	alerts += len(run.Flush())
	if matches != 3 || alerts != 1 {
		t.Errorf("%d matches, %d alerts; want 3, 1", matches, alerts)
	}
}

func TestSameRuleTwiceIsNotAConflict(t *testing.T) {
	fsys := fstest.MapFS{"a/r.yml": {Data: []byte(rules)}, "b/only-detection.yml": {Data: []byte(rules[:len("title: SSH failed password\nid: r-fail\nname: ssh_fail\nlogsource: {product: linux, service: sshd}\ndetection:\n  k: ['Failed password']\n  condition: k\n")])}}
	if _, err := ruleset.Load(fsys, []string{"a", "b"}, ruleset.Options{}); err != nil {
		t.Fatal(err)
	}
}
