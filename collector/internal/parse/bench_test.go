package parse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Benchmarks of parse-and-normalise per parser: one record in, one ECS
// event out (through the Dispatcher, as the collector calls it). Run with
//
//	go test ./collector/internal/parse -run '^$' -bench . -benchmem -cpu 1
//
// and read records/s as the "rec/s" metric (per core with -cpu 1).

func benchLines(b *testing.B, source string, lines []string) {
	d := New(Options{Now: func() time.Time { return goldenNow }})
	recs := make([]Record, len(lines))
	for i, l := range lines {
		recs[i] = Record{Raw: []byte(l), Source: source}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := d.Parse(recs[i%len(recs)])
		if strings.HasSuffix(ev.Dataset(), ".unparsed") {
			b.Fatalf("unparsed: %s", recs[i%len(recs)].Raw)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
}

func goldenLines(b *testing.B, name string, keep func(string) bool) []string {
	data, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && (keep == nil || keep(l)) {
			out = append(out, l)
		}
	}
	return out
}

func contains(s string) func(string) bool {
	return func(l string) bool { return strings.Contains(l, s) }
}

func BenchmarkSSHD(b *testing.B) {
	benchLines(b, "/var/log/auth.log", goldenLines(b, "auth.log", contains(" sshd[")))
}

func BenchmarkSudo(b *testing.B) {
	benchLines(b, "/var/log/auth.log", goldenLines(b, "auth.log", contains(" sudo: ")))
}

func BenchmarkSu(b *testing.B) {
	benchLines(b, "/var/log/auth.log", goldenLines(b, "auth.log", contains(" su[")))
}

func BenchmarkAccounts(b *testing.B) {
	benchLines(b, "/var/log/auth.log", goldenLines(b, "auth.log", func(l string) bool {
		return strings.Contains(l, "useradd[") || strings.Contains(l, "groupadd[") || strings.Contains(l, "usermod[") || strings.Contains(l, "userdel[")
	}))
}

func BenchmarkSyslogRFC3164(b *testing.B) {
	benchLines(b, "", goldenLines(b, "syslog.log", func(l string) bool { return !strings.Contains(l[:min(6, len(l))], ">1 ") }))
}

func BenchmarkSyslogRFC5424(b *testing.B) {
	benchLines(b, "", goldenLines(b, "syslog.log", func(l string) bool { return strings.Contains(l[:min(6, len(l))], ">1 ") }))
}

func BenchmarkNginxAccess(b *testing.B) {
	benchLines(b, "/var/log/nginx/access.log", goldenLines(b, "nginx-access.log", func(l string) bool {
		return strings.Contains(l, "] \"") && !strings.HasPrefix(l, "{")
	}))
}

func BenchmarkNginxAccessJSON(b *testing.B) {
	benchLines(b, "/var/log/nginx/access.log", goldenLines(b, "nginx-access.log", func(l string) bool { return strings.HasPrefix(l, "{") }))
}

func BenchmarkApacheAccess(b *testing.B) {
	benchLines(b, "/var/log/apache2/access.log", goldenLines(b, "apache-access.log", nil))
}

func BenchmarkApacheError(b *testing.B) {
	benchLines(b, "/var/log/apache2/error.log", goldenLines(b, "apache-error.log", nil))
}

func BenchmarkNginxError(b *testing.B) {
	benchLines(b, "/var/log/nginx/error.log", goldenLines(b, "nginx-access.log", contains("[error]")))
}

func BenchmarkIptables(b *testing.B) {
	benchLines(b, "/var/log/kern.log", goldenLines(b, "kern.log", contains("SRC=")))
}

func BenchmarkVsftpd(b *testing.B) {
	benchLines(b, "/var/log/vsftpd.log", goldenLines(b, "vsftpd.log", nil))
}

func BenchmarkPostfixDovecot(b *testing.B) {
	benchLines(b, "/var/log/mail.log", goldenLines(b, "mail.log", nil))
}

func BenchmarkSuricataEVE(b *testing.B) {
	benchLines(b, "/var/log/suricata/eve.json", goldenLines(b, "eve.json", nil))
}

// BenchmarkAuditdJoined measures records/s of the auditd joiner (several
// records make one event).
func BenchmarkAuditdJoined(b *testing.B) {
	lines := goldenLines(b, "audit.log", nil)
	d := New(Options{Now: func() time.Time { return goldenNow }})
	st := d.NewStream("")
	recs := make([]Record, len(lines))
	for i, l := range lines {
		recs[i] = Record{Raw: []byte(l), Source: "/var/log/audit/audit.log"}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Add(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	st.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
}
