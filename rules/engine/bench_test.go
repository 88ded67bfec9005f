package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// sharedCollection loads the ~500 SigmaHQ rules of the shared set (DRL 1.1).
func sharedCollection(tb testing.TB) *sigma.Collection {
	dir := testenv.SharedData(tb)
	all := &sigma.Collection{}
	for _, sub := range []string{"sigma/rules", "sigma/rules-emerging-threats", "sigma/rules-threat-hunting"} {
		c, err := sigma.LoadFS(os.DirFS(filepath.Join(dir, sub)), ".", nil)
		if err != nil {
			tb.Fatal(err)
		}
		all.Rules = append(all.Rules, c.Rules...)
		all.Errors = append(all.Errors, c.Errors...)
	}
	return all
}

// eventMix returns n events: Linux auth, web access, DNS, flows, TLS and
// Windows process creation (Sysmon 1), in platform (ECS) form, mostly
// benign with a few attacks, every value varied.
func eventMix(n int) []event.Event {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := make([]event.Event, 0, n)
	users := []string{"root", "admin", "mario.rossi", "backup", "www-data"}
	paths := []string{"/index.php", "/wp-login.php", "/images/logo.png", "/api/v1/items", "/comune/albo-pretorio", "/cgi-bin/test.cgi"}
	queries := []string{"id=42", "page=2&sort=asc", "q=tari+2025", "file=../../../../etc/passwd", "id=1%20UNION%20SELECT%20user,pass%20FROM%20users", ""}
	agents := []string{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0", "curl/8.5.0", "sqlmap/1.7.2#stable", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"}
	domains := []string{"www.comune.firenze.it", "mail.google.com", "update.microsoft.com", "x7f3k2.duckdns.org", "cdn.jsdelivr.net", "api.telegram.org"}
	cmds := []struct{ exe, cmd, parent string }{
		{`C:\Windows\System32\svchost.exe`, `C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule`, `C:\Windows\System32\services.exe`},
		{`C:\Program Files\Google\Chrome\Application\chrome.exe`, `"C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer`, `C:\Program Files\Google\Chrome\Application\chrome.exe`},
		{`C:\Windows\System32\cmd.exe`, `cmd.exe /c whoami /all`, `C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe`},
		{`C:\Windows\System32\reg.exe`, `"C:\WINDOWS\system32\reg.exe" add "HKCU\Software\Microsoft\Windows Script\Settings" /v AmsiEnable /t REG_DWORD /d 0 /f`, `C:\Windows\System32\cmd.exe`},
		{`C:\Windows\explorer.exe`, `C:\Windows\Explorer.EXE`, `C:\Windows\System32\userinit.exe`},
	}
	for i := 0; i < n; i++ {
		e := event.Event{"@timestamp": ts.Add(time.Duration(i) * time.Millisecond), "organization.id": "comune-042", "host.name": fmt.Sprintf("srv%02d", i%17)}
		switch i % 10 {
		case 0, 1, 2: // Linux auth
			u := users[i%len(users)]
			e["event.dataset"] = "sshd"
			e["process.name"] = "sshd"
			e["source.ip"] = fmt.Sprintf("203.0.113.%d", i%250)
			e["user.name"] = u
			if i%3 == 0 {
				e["message"] = fmt.Sprintf("Failed password for invalid user %s from 203.0.113.%d port %d ssh2", u, i%250, 40000+i%20000)
			} else {
				e["message"] = fmt.Sprintf("Accepted publickey for %s from 198.51.100.%d port %d ssh2: ED25519 SHA256:abc%d", u, i%250, 40000+i%20000, i)
			}
		case 3, 4, 5: // web access
			p, q := paths[i%len(paths)], queries[(i/3)%len(queries)]
			e["event.dataset"] = "nginx.access"
			e["source.ip"] = fmt.Sprintf("192.0.2.%d", i%250)
			e["http.request.method"] = "GET"
			e["url.path"] = p
			e["url.query"] = q
			e["url.original"] = p + "?" + q
			e["http.response.status_code"] = int64(200 + (i%3)*100)
			e["user_agent.original"] = agents[i%len(agents)]
		case 6: // DNS
			e["event.dataset"] = "dns"
			e["dns.question.name"] = fmt.Sprintf("h%d.%s", i%100, domains[i%len(domains)])
			e["dns.question.type"] = "A"
			e["source.ip"] = "10.0.0.53"
		case 7: // flow
			e["event.dataset"] = "flow"
			e["source.ip"] = fmt.Sprintf("10.1.%d.%d", i%200, i%250)
			e["destination.ip"] = fmt.Sprintf("198.18.%d.%d", i%100, i%200)
			e["destination.port"] = int64([]int{443, 80, 22, 3389, 445}[i%5])
			e["network.transport"] = "tcp"
		case 8: // TLS
			e["event.dataset"] = "tls"
			e["tls.client.server_name"] = domains[i%len(domains)]
			e["destination.port"] = int64(443)
		case 9: // Windows process creation (Sysmon 1)
			c := cmds[(i/10)%len(cmds)]
			e["event.dataset"] = "windows.sysmon_operational"
			e["event.code"] = "1"
			e["process.executable"] = c.exe
			e["process.command_line"] = c.cmd
			e["process.parent.executable"] = c.parent
			e["user.name"] = `CORP\user` + fmt.Sprint(i%50)
		}
		out = append(out, e)
	}
	return out
}

func BenchmarkCompile500(b *testing.B) {
	c := sharedCollection(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := engine.Compile(c, engine.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(c.Rules)), "rules")
}

func BenchmarkEvalMix(b *testing.B) {
	for _, m := range []*mapping.Mapping{mapping.Default(), mapping.None()} {
		b.Run("mapping="+m.Name, func(b *testing.B) {
			c := sharedCollection(b)
			bundle, err := engine.Compile(c, engine.Options{Mapping: m})
			if err != nil {
				b.Fatal(err)
			}
			evs := eventMix(10000)
			ev := bundle.NewEvaluator()
			var dst []engine.Match
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				dst = ev.Eval(evs[i%len(evs)], dst[:0])
			}
			el := time.Since(start)
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
			b.ReportMetric(float64(ev.Evaluated)/float64(ev.Events), "rules-evaluated/event")
			b.ReportMetric(float64(ev.Matched)/float64(ev.Events), "matches/event")
			b.ReportMetric(float64(len(bundle.Rules())), "rules")
		})
	}
}
