package parsecli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

var fixed = func() time.Time { return time.Date(2024, 6, 15, 12, 0, 0, 0, time.UTC) }

func TestParseFiles(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.log")
	if err := os.WriteFile(auth, []byte(strings.Join([]string{
		"Feb 12 14:10:21 sd-126005 sshd[16378]: Invalid user pascal from 35.188.49.176 port 53502",
		"",
		"Feb 21 23:35:33 localhost sudo: vagrant : TTY=pts/0 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/ls",
		"garbage \xff line",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(audit, []byte(
		"type=SYSCALL msg=audit(1364481363.243:24287): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=2 uid=0 comm=\"id\" exe=\"/usr/bin/id\"\n"+
			"type=EXECVE msg=audit(1364481363.243:24287): argc=1 a0=\"id\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"--entity", "comune-x", auth, audit}, nil, &out, &errb, fixed)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{"sshd", "sudo", "auth.unparsed", "auditd"}
	if len(lines) != len(want) {
		t.Fatalf("%d events, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, l := range lines {
		ev, err := event.Decode([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Dataset() != want[i] {
			t.Errorf("event %d: dataset %q, want %q", i+1, ev.Dataset(), want[i])
		}
		if ev.Org() != "comune-x" {
			t.Errorf("event %d: organization.id %q", i+1, ev.Org())
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("event %d: %v\n%s", i+1, err, l)
		}
	}
}

func TestForcedDatasetReportsLine(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x.log")
	if err := os.WriteFile(f, []byte("not an access log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--dataset", "nginx.access", "--host", "web1", f}, nil, &out, &errb, fixed); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), f+":1:") {
		t.Errorf("stderr does not name file and line: %q", errb.String())
	}
	ev, err := event.Decode(bytes.TrimSpace(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Dataset() != "nginx.access.unparsed" || ev.String("host.name") != "web1" {
		t.Errorf("got %s", out.String())
	}
}

func TestErrors(t *testing.T) {
	var out, errb bytes.Buffer
	missing := filepath.Join(t.TempDir(), "missing.log")
	if code := run([]string{missing}, nil, &out, &errb, fixed); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), missing) {
		t.Errorf("stderr does not name the file: %q", errb.String())
	}
	errb.Reset()
	if code := run([]string{"--dataset", "nope", missing}, nil, &out, &errb, fixed); code != 2 {
		t.Errorf("unknown dataset: exit %d, want 2", code)
	}
	if code := run(nil, nil, &out, &errb, fixed); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
}

func TestStdin(t *testing.T) {
	var out, errb bytes.Buffer
	in := strings.NewReader(`{"timestamp":"2021-06-01T10:00:00.000000+0000","event_type":"alert","src_ip":"1.2.3.4","dest_ip":"5.6.7.8","proto":"TCP","alert":{"signature_id":1,"signature":"x","severity":2}}` + "\n")
	if code := run([]string{"-"}, in, &out, &errb, fixed); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	ev, err := event.Decode(bytes.TrimSpace(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Dataset() != "suricata" || ev.String("event.kind") != "alert" {
		t.Errorf("got %s", out.String())
	}
}
