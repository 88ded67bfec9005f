package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main("1.2.3", args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfg, []byte("state_dir: "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || out != "csirt-agent 1.2.3\n" {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "--help"); code != 0 || !strings.Contains(out, "systemctl enable --now csirt-agent") {
		t.Errorf("help: %d %q", code, out)
	}
	if code, _, _ := runCLI(t); code != 2 {
		t.Errorf("no command: %d", code)
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "status", "--config", cfg); code != 1 || !strings.Contains(errs, "never run") {
		t.Errorf("status without a status file: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "doctor", "--config", cfg); code != 1 || !strings.Contains(out, "FAIL  identity") || !strings.Contains(out, "csirt-agent enroll") {
		t.Errorf("doctor not enrolled: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "run", "--config", cfg); code != 1 || !strings.Contains(errs, "not enrolled") {
		t.Errorf("run not enrolled: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "enroll", "--config", cfg); code != 2 || !strings.Contains(errs, "--server and --token are required") {
		t.Errorf("enroll without flags: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "enroll", "--config", cfg, "--server", "https://127.0.0.1:1", "--token", "not-a-token"); code != 1 || errs == "" || strings.Contains(errs, "not-a-token") {
		t.Errorf("enroll with a bad token must fail without echoing it: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "run", "--config", filepath.Join(dir, "missing.yml")); code != 1 || !strings.Contains(errs, "missing.yml") {
		t.Errorf("explicit missing config: %d %q", code, errs)
	}
}

func TestPcapCommand(t *testing.T) {
	if code, _, errs := runCLI(t, "pcap"); code != 2 || !strings.Contains(errs, "csirt-agent pcap") {
		t.Errorf("pcap without files: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "pcap", "--format", "csv", "x.pcap"); code != 2 || !strings.Contains(errs, "jsonl") {
		t.Errorf("pcap --format csv: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "pcap", filepath.Join(t.TempDir(), "missing.pcap")); code != 1 || !strings.Contains(errs, "missing.pcap") {
		t.Errorf("pcap of a missing file: %d %q", code, errs)
	}
	if code, out, _ := runCLI(t, "--help"); code != 0 || !strings.Contains(out, "csirt-agent pcap [--format jsonl] FILE...") {
		t.Errorf("help lacks pcap: %q", out)
	}
}
