// Package loadgen produces a realistic, reproducible mixed event stream for
// N entities (`csirt loadgen`), for load runs and demos: sshd logins with
// occasional brute force, sudo, web access logs with scans, firewall
// drops, network flows and DNS queries with rare tunnelling-like names.
// Entity sizes follow a Zipf-like law (a few big bodies, many small
// towns). Events go to csirt.events.v1 as normalised events, or as the raw
// records of signed agent batches to csirt.raw.v1 (--raw) from fake
// agents registered in the store. The same seed gives the same stream.
package loadgen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Record is one generated record: the normalised event and the raw form
// an agent would ship (a log line, or a summary document).
type Record struct {
	Event   event.Event
	Entity  string
	AgentID string
	Stream  string // the agent stream (log file path, or "netsum")
	Raw     []byte // the log line, or the summary JSON
	Summary bool   // Raw is a summary document, not a log line
}

// Entity is one generated entity.
type Entity struct {
	ID     string
	Weight float64 // share of the stream
	Hosts  []string
	Net    netip.Prefix // internal addresses
}

// Generator makes records. It is not safe for concurrent use.
type Generator struct {
	rnd       *rand.Rand
	seed      uint64
	entities  []Entity
	cum       []float64
	attackers []string // public addresses shared by attacks on several entities
	n         uint64
	bursts    map[string]*burst // entity -> current attack burst
}

type burst struct {
	kind  string // "ssh" or "scan"
	src   string
	left  int
	user  int
	paths int
}

// New makes a generator for n entities.
func New(n int, seed uint64) (*Generator, error) {
	if n < 1 || n > 10000 {
		return nil, fmt.Errorf("loadgen: %d entities: use 1 to 10000", n)
	}
	// A seeded PRNG on purpose: the stream must be reproducible, nothing here is secret.
	g := &Generator{rnd: rand.New( //nolint:gosec // reproducible test data, not security
		rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed: seed, bursts: map[string]*burst{}}
	total := 0.0
	for i := 0; i < n; i++ {
		w := 1 / math.Pow(float64(i+1), 1.1)
		hosts := 1 + int(math.Round(8*w/1)) + i%2
		e := Entity{ID: fmt.Sprintf("loadgen-ente-%03d", i+1), Weight: w,
			Net: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i / 250), byte(i % 250), 0}), 24)}
		for h := 0; h < hosts; h++ {
			e.Hosts = append(e.Hosts, []string{"srv-web", "srv-mail", "srv-app", "fw", "srv-dc", "nas", "srv-db", "srv-file"}[h%8]+fmt.Sprintf("%02d", h/8+1))
		}
		g.entities = append(g.entities, e)
		total += w
	}
	acc := 0.0
	for i := range g.entities {
		g.entities[i].Weight /= total
		acc += g.entities[i].Weight
		g.cum = append(g.cum, acc)
	}
	for i := 0; i < 8; i++ {
		g.attackers = append(g.attackers, fmt.Sprintf("%d.%d.%d.%d", []int{45, 185, 193, 91, 103, 198}[i%6], 10+g.rnd.IntN(240), g.rnd.IntN(256), 1+g.rnd.IntN(254)))
	}
	return g, nil
}

// Entities lists the entities, biggest first.
func (g *Generator) Entities() []Entity { return g.entities }

// AgentID is the fake agent of an entity.
func AgentID(entity string) string { return entity + "-loadgen-a1" }

func (g *Generator) pickEntity() *Entity {
	x := g.rnd.Float64()
	i := sort.SearchFloat64s(g.cum, x)
	if i >= len(g.entities) {
		i = len(g.entities) - 1
	}
	return &g.entities[i]
}

func (g *Generator) internal(e *Entity) string {
	b := e.Net.Addr().As4()
	b[3] = byte(2 + g.rnd.IntN(250))
	return netip.AddrFrom4(b).String()
}

func (g *Generator) public() string {
	return fmt.Sprintf("%d.%d.%d.%d", 2+g.rnd.IntN(220), g.rnd.IntN(256), g.rnd.IntN(256), 1+g.rnd.IntN(254))
}

var (
	users     = []string{"mario.rossi", "giulia.bianchi", "admin", "backup", "anna.verdi", "luca.neri", "protocollo", "ced"}
	badUsers  = []string{"root", "admin", "test", "oracle", "ubuntu", "user", "postgres", "git", "pi", "support"}
	webPaths  = []string{"/", "/albo-pretorio", "/amministrazione-trasparente", "/servizi/anagrafe", "/news/2026/avviso", "/css/main.css", "/js/app.js", "/img/logo.png", "/contatti", "/bandi-di-gara"}
	scanPaths = []string{"/wp-login.php", "/.env", "/phpmyadmin/", "/.git/config", "/admin.php", "/xmlrpc.php", "/cgi-bin/luci", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/actuator/health", "/server-status"}
	domains   = []string{"www.regione.toscana.it", "login.microsoftonline.com", "www.google.com", "pec.comune.example.it", "update.microsoft.com", "www.agenziaentrate.gov.it", "cdn.jsdelivr.net", "api.pagopa.gov.it"}
	agents    = []string{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)"}
)

// Next returns the next record, stamped at t.
func (g *Generator) Next(t time.Time) Record {
	g.n++
	e := g.pickEntity()
	host := e.Hosts[g.rnd.IntN(len(e.Hosts))]
	t = t.UTC()
	ev := event.Event{
		"@timestamp": t, "event.ingested": t, "event.kind": "event", "organization.id": e.ID,
		"agent.id": AgentID(e.ID), "host.name": host,
	}
	rec := Record{Event: ev, Entity: e.ID, AgentID: AgentID(e.ID)}
	b := g.bursts[e.ID]
	if b == nil && g.rnd.IntN(1500) == 0 {
		// Attacks come from a small shared pool, so that the same address
		// hits several entities (regional campaigns).
		b = &burst{kind: []string{"ssh", "scan"}[g.rnd.IntN(2)], src: g.attackers[g.rnd.IntN(len(g.attackers))], left: 20 + g.rnd.IntN(60)}
		g.bursts[e.ID] = b
	}
	x := g.rnd.IntN(100)
	switch {
	case b != nil && g.rnd.IntN(3) == 0:
		b.left--
		if b.left <= 0 {
			delete(g.bursts, e.ID)
		}
		if b.kind == "ssh" {
			b.user++
			g.sshd(&rec, host, t, false, b.src, badUsers[b.user%len(badUsers)])
		} else {
			b.paths++
			g.web(&rec, host, t, b.src, scanPaths[b.paths%len(scanPaths)], 404, "curl/8.5.0")
		}
	case x < 15:
		ok := g.rnd.IntN(10) < 4
		src := g.internal(e)
		user := users[g.rnd.IntN(len(users))]
		if !ok && g.rnd.IntN(2) == 0 {
			src, user = g.public(), badUsers[g.rnd.IntN(len(badUsers))]
		}
		g.sshd(&rec, host, t, ok, src, user)
	case x < 20:
		g.sudo(&rec, host, t, users[g.rnd.IntN(len(users))])
	case x < 50:
		status := []int{200, 200, 200, 200, 304, 301, 404, 500}[g.rnd.IntN(8)]
		g.web(&rec, host, t, g.public(), webPaths[g.rnd.IntN(len(webPaths))], status, agents[g.rnd.IntN(len(agents))])
	case x < 65:
		g.firewall(&rec, host, t, g.public(), g.internal(e))
	case x < 85:
		g.flow(&rec, t, g.internal(e), g.public())
	default:
		name := domains[g.rnd.IntN(len(domains))]
		if g.rnd.IntN(200) == 0 {
			name = g.tunnelName()
		}
		g.dns(&rec, t, g.internal(e), name)
	}
	ev["event.id"] = event.IDFromRaw([]byte("loadgen"), []byte(strconv.FormatUint(g.seed, 10)), []byte(strconv.FormatUint(g.n, 10)))
	if !rec.Summary {
		ev["event.original"] = string(rec.Raw)
	}
	return rec
}

func syslogLine(t time.Time, host, prog string, pid int, msg string) string {
	return fmt.Sprintf("%s %s %s[%d]: %s", t.Format(time.Stamp), host, prog, pid, msg)
}

func (g *Generator) sshd(r *Record, host string, t time.Time, ok bool, src, user string) {
	port := int64(30000 + g.rnd.IntN(30000))
	pid := 1000 + g.rnd.IntN(60000)
	outcome, typ, msg := "failure", []string{"start"}, fmt.Sprintf("Failed password for invalid user %s from %s port %d ssh2", user, src, port)
	if ok {
		outcome, typ, msg = "success", []string{"start"}, fmt.Sprintf("Accepted publickey for %s from %s port %d ssh2", user, src, port)
	}
	r.Stream, r.Raw = "/var/log/auth.log", []byte(syslogLine(t, host, "sshd", pid, msg))
	set(r.Event, "event.dataset", "sshd", "event.module", "system", "event.category", []string{"authentication", "session"},
		"event.type", typ, "event.outcome", outcome, "event.action", "ssh_login", "process.name", "sshd",
		"source.ip", src, "source.port", port, "user.name", user, "related.ip", []string{src}, "related.user", []string{user})
}

func (g *Generator) sudo(r *Record, host string, t time.Time, user string) {
	cmd := []string{"/usr/bin/systemctl restart nginx", "/usr/bin/apt-get update", "/bin/cat /var/log/syslog", "/usr/bin/tail -f /var/log/nginx/error.log"}[g.rnd.IntN(4)]
	msg := fmt.Sprintf("%s : TTY=pts/0 ; PWD=/home/%s ; USER=root ; COMMAND=%s", user, user, cmd)
	r.Stream, r.Raw = "/var/log/auth.log", []byte(syslogLine(t, host, "sudo", 1000+g.rnd.IntN(60000), msg))
	set(r.Event, "event.dataset", "sudo", "event.module", "system", "event.category", []string{"process"}, "event.type", []string{"start"},
		"event.outcome", "success", "process.name", "sudo", "process.command_line", cmd, "user.name", user,
		"user.effective.name", "root", "related.user", []string{user, "root"})
}

func (g *Generator) web(r *Record, host string, t time.Time, src, path string, status int, ua string) {
	size := int64(200 + g.rnd.IntN(40000))
	line := fmt.Sprintf(`%s - - [%s] "GET %s HTTP/1.1" %d %d "-" "%s"`, src, t.Format("02/Jan/2006:15:04:05 -0700"), path, status, size, ua)
	r.Stream, r.Raw = "/var/log/nginx/access.log", []byte(line)
	outcome := "success"
	if status >= 400 {
		outcome = "failure"
	}
	set(r.Event, "event.dataset", "nginx.access", "event.module", "nginx", "event.category", []string{"web"}, "event.type", []string{"access"},
		"event.outcome", outcome, "source.ip", src, "http.request.method", "GET", "http.response.status_code", int64(status),
		"http.response.body.bytes", size, "url.original", path, "url.path", path, "user_agent.original", ua, "related.ip", []string{src})
}

func (g *Generator) firewall(r *Record, host string, t time.Time, src, dst string) {
	port := []int64{22, 23, 445, 3389, 8080, 5900, 1433, 3306, 6379}[g.rnd.IntN(9)]
	sport := int64(1024 + g.rnd.IntN(60000))
	msg := fmt.Sprintf("[UFW BLOCK] IN=eth0 OUT= MAC= SRC=%s DST=%s LEN=44 TOS=0x00 PREC=0x00 TTL=240 ID=54321 PROTO=TCP SPT=%d DPT=%d WINDOW=1024 RES=0x00 SYN URGP=0", src, dst, sport, port)
	r.Stream, r.Raw = "/var/log/kern.log", []byte(fmt.Sprintf("%s %s kernel: %s", t.Format(time.Stamp), host, msg))
	set(r.Event, "event.dataset", "iptables", "event.module", "iptables", "event.category", []string{"network"}, "event.type", []string{"denied", "connection"},
		"event.action", "drop", "source.ip", src, "source.port", sport, "destination.ip", dst, "destination.port", port,
		"network.transport", "tcp", "related.ip", []string{src, dst})
}

func (g *Generator) flow(r *Record, t time.Time, src, dst string) {
	port := []int64{443, 443, 443, 80, 53, 123, 993, 587}[g.rnd.IntN(8)]
	out, in := int64(300+g.rnd.IntN(20000)), int64(500+g.rnd.IntN(200000))
	set(r.Event, "event.dataset", "flow", "event.module", "csirt", "event.category", []string{"network"}, "event.type", []string{"connection", "end"},
		"source.ip", src, "source.port", int64(32768+g.rnd.IntN(28000)), "destination.ip", dst, "destination.port", port,
		"source.bytes", out, "destination.bytes", in, "network.bytes", out+in, "network.transport", "tcp", "related.ip", []string{src, dst})
	g.summary(r)
}

func (g *Generator) dns(r *Record, t time.Time, src, name string) {
	set(r.Event, "event.dataset", "dns", "event.module", "csirt", "event.category", []string{"network"}, "event.type", []string{"protocol"},
		"source.ip", src, "destination.ip", "10.0.0.53", "destination.port", int64(53), "network.transport", "udp",
		"dns.question.name", name, "dns.question.type", "A", "dns.type", "query", "related.ip", []string{src})
	g.summary(r)
}

// summary stores the event's network fields as the agent's summary JSON.
func (g *Generator) summary(r *Record) {
	doc := map[string]any{}
	for k, v := range r.Event {
		switch k {
		case "organization.id", "agent.id", "event.ingested", "host.name":
			continue
		case "@timestamp":
			v = v.(time.Time).Format(time.RFC3339Nano)
		}
		doc[k] = v
	}
	raw, _ := json.Marshal(doc)
	r.Stream, r.Raw, r.Summary = "netsum", raw, true
}

const b32 = "abcdefghijklmnopqrstuvwxyz234567"

// tunnelName is a DNS name shaped like tunnelled data: long high-entropy
// labels under one parent domain.
func (g *Generator) tunnelName() string {
	var b strings.Builder
	for l := 0; l < 2; l++ {
		for i := 0; i < 40+g.rnd.IntN(20); i++ {
			b.WriteByte(b32[g.rnd.IntN(len(b32))])
		}
		b.WriteByte('.')
	}
	b.WriteString("t.exfil-cdn.net")
	return b.String()
}

func set(e event.Event, kv ...any) {
	for i := 0; i+1 < len(kv); i += 2 {
		e[kv[i].(string)] = kv[i+1]
	}
}
