package parse

import (
	"encoding/hex"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Auditd parses Linux audit records ("type=SYSCALL msg=audit(1364481363.243:
// 24287): ..."), alone or through syslog (audispd). Parse handles one
// record; AuditJoiner joins the records of one kernel event (SYSCALL,
// EXECVE, CWD, PATH, PROCTITLE, ... sharing a serial) into one event.
type Auditd struct{ opts *Options }

var _ lineParser = (*Auditd)(nil)

func (*Auditd) Name() string { return "auditd" }

func (p *Auditd) Parse(rec Record) (event.Event, error) { return runLine(p, rec, p.opts) }

func (p *Auditd) parseLine(in *input) (event.Event, error) {
	r, ok := parseAuditRecord(in)
	if !ok {
		return nil, ErrNoMatch
	}
	return auditEvent(in, []auditRecord{r}), nil
}

// auditRecord is one parsed audit record.
type auditRecord struct {
	typ    string
	ts     time.Time
	serial uint64
	node   string
	kv     map[string]string
	line   string
}

// auditKey identifies the records of one kernel event.
type auditKey struct {
	node   string
	serial uint64
	sec    int64
}

func (r *auditRecord) key() auditKey { return auditKey{r.node, r.serial, r.ts.Unix()} }

// isAudit reports whether a line holds an audit record.
func isAudit(s string) bool {
	return strings.Contains(s, "type=") && strings.Contains(s, "msg=audit(")
}

func parseAuditRecord(in *input) (auditRecord, bool) {
	var r auditRecord
	s := in.line
	if !strings.HasPrefix(s, "type=") && !strings.HasPrefix(s, "node=") {
		if splitSyslog(in) {
			s = in.msg
		}
	}
	// Enriched logs append "\x1dUID="root" ..." : keep the names.
	s, enriched, _ := strings.Cut(s, "\x1d")
	if strings.HasPrefix(s, "node=") {
		n, rest, _ := strings.Cut(s[5:], " ")
		r.node, s = n, rest
	}
	if !strings.HasPrefix(s, "type=") {
		return r, false
	}
	typ, rest, ok := strings.Cut(s[5:], " ")
	if !ok || !strings.HasPrefix(rest, "msg=audit(") {
		return r, false
	}
	r.typ = typ
	rest = rest[len("msg=audit("):]
	stamp, rest, ok := strings.Cut(rest, "):")
	if !ok {
		return r, false
	}
	secs, serial, ok := strings.Cut(stamp, ":")
	if !ok {
		return r, false
	}
	sec, frac, _ := strings.Cut(secs, ".")
	isec, ok1 := atoi(sec)
	ms, _ := atoi((frac + "000")[:3])
	n, err := strconv.ParseUint(serial, 10, 64)
	if !ok1 || err != nil {
		return r, false
	}
	r.ts = time.Unix(isec, ms*int64(time.Millisecond)).UTC()
	r.serial = n
	r.kv = auditKV(rest)
	if enriched != "" {
		for k, v := range auditKV(enriched) {
			r.kv["_"+k] = v
		}
	}
	r.line = in.line
	return r, true
}

// auditKV parses key=value pairs; values may be "quoted", 'single quoted'
// (the nested msg of user-space records, whose pairs are merged) or bare.
func auditKV(s string) map[string]string {
	kv := make(map[string]string, 24)
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return kv
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return kv
		}
		k := s[:eq]
		if sp := strings.IndexByte(k, ' '); sp >= 0 {
			s = s[sp+1:]
			continue
		}
		s = s[eq+1:]
		var v string
		switch {
		case strings.HasPrefix(s, "\""):
			// Quoted values keep their opening quote in the map, so that
			// unquoted (hex-encoded) ones can be told apart: see str.
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				v, s = s, ""
			} else {
				v, s = s[:end+1], s[end+2:]
			}
		case strings.HasPrefix(s, "'"):
			end := strings.IndexByte(s[1:], '\'')
			var inner string
			if end < 0 {
				inner, s = s[1:], ""
			} else {
				inner, s = s[1:end+1], s[end+2:]
			}
			for ik, iv := range auditKV(inner) {
				if _, dup := kv[ik]; !dup || ik == "exe" || ik == "res" {
					kv[ik] = iv
				}
			}
			continue
		default:
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				v, s = s, ""
			} else {
				v, s = s[:end], s[end+1:]
			}
		}
		kv[k] = v
	}
}

// unq returns a value without the quote marker auditKV keeps.
func unq(v string) string { return strings.TrimPrefix(v, "\"") }

// auditStr returns a value of a field that auditd writes either quoted
// (printable) or hex-encoded (otherwise): comm, exe, acct, cmd, cwd, name,
// proctitle, EXECVE arguments.
func auditStr(v string) string {
	if strings.HasPrefix(v, "\"") {
		return v[1:]
	}
	return auditHex(v)
}

// auditHex decodes a hex-encoded value; NULs become spaces.
func auditHex(v string) string {
	if len(v) < 2 || len(v)%2 != 0 {
		return v
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return v
		}
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return v
	}
	t, _ := toText(b)
	return strings.TrimRight(strings.ReplaceAll(t, "\x00", " "), " ")
}

// x86_64 syscall numbers worth naming.
var syscalls = map[string]string{
	"2": "open", "257": "openat", "59": "execve", "322": "execveat", "42": "connect", "43": "accept",
	"49": "bind", "87": "unlink", "263": "unlinkat", "82": "rename", "264": "renameat", "90": "chmod",
	"91": "fchmod", "268": "fchmodat", "92": "chown", "260": "fchownat", "105": "setuid", "106": "setgid",
	"101": "ptrace", "165": "mount", "175": "init_module", "313": "finit_module", "176": "delete_module",
	"62": "kill", "56": "clone", "57": "fork", "58": "vfork", "41": "socket", "44": "sendto",
	"84": "rmdir", "83": "mkdir", "86": "link", "88": "symlink", "85": "creat", "76": "truncate",
}

// auditCategory maps user-space record types to ECS.
var auditCategory = map[string]struct {
	cat, typ []string
}{
	"USER_AUTH":        {[]string{"authentication"}, []string{"info"}},
	"USER_ACCT":        {[]string{"authentication"}, []string{"info"}},
	"USER_ERR":         {[]string{"authentication"}, []string{"info"}},
	"CRED_ACQ":         {[]string{"authentication"}, []string{"info"}},
	"CRED_REFR":        {[]string{"authentication"}, []string{"info"}},
	"CRED_DISP":        {[]string{"authentication"}, []string{"info"}},
	"USER_LOGIN":       {[]string{"authentication", "session"}, []string{"start"}},
	"USER_LOGOUT":      {[]string{"session"}, []string{"end"}},
	"USER_START":       {[]string{"session"}, []string{"start"}},
	"USER_END":         {[]string{"session"}, []string{"end"}},
	"USER_CMD":         {[]string{"process"}, []string{"start"}},
	"ADD_USER":         {[]string{"iam"}, []string{"user", "creation"}},
	"DEL_USER":         {[]string{"iam"}, []string{"user", "deletion"}},
	"ADD_GROUP":        {[]string{"iam"}, []string{"group", "creation"}},
	"DEL_GROUP":        {[]string{"iam"}, []string{"group", "deletion"}},
	"USER_MGMT":        {[]string{"iam"}, []string{"user", "change"}},
	"GRP_MGMT":         {[]string{"iam"}, []string{"group", "change"}},
	"USER_CHAUTHTOK":   {[]string{"iam"}, []string{"user", "change"}},
	"CHGRP_ID":         {[]string{"iam"}, []string{"group", "change"}},
	"CHUSER_ID":        {[]string{"iam"}, []string{"user", "change"}},
	"SERVICE_START":    {[]string{"process"}, []string{"start"}},
	"SERVICE_STOP":     {[]string{"process"}, []string{"end"}},
	"CONFIG_CHANGE":    {[]string{"configuration"}, []string{"change"}},
	"DAEMON_START":     {[]string{"process"}, []string{"start"}},
	"DAEMON_END":       {[]string{"process"}, []string{"end"}},
	"AVC":              {[]string{"host"}, []string{"info", "denied"}},
	"ANOM_ABEND":       {[]string{"process"}, []string{"end", "error"}},
	"ANOM_PROMISCUOUS": {[]string{"network"}, []string{"change"}},
}

// auditEvent builds one event from the records of one audit event.
func auditEvent(in *input, recs []auditRecord) event.Event {
	ev := in.base("auditd")
	delete(ev, "message")
	if len(recs) > 1 {
		lines := make([]string, len(recs))
		for i, r := range recs {
			lines[i] = r.line
		}
		if !in.opts.DropOriginal {
			ev["event.original"] = strings.Join(lines, "\n")
		}
	}
	ev["event.module"] = "auditd"
	primary := recs[0]
	for _, r := range recs {
		if r.typ == "SYSCALL" {
			primary = r
			break
		}
	}
	ev["@timestamp"] = primary.ts
	ev["event.code"] = primary.typ
	set(ev, "host.hostname", primary.node)
	kv := primary.kv
	setInt(ev, "process.pid", kv["pid"])
	setInt(ev, "process.parent.pid", kv["ppid"])
	if c := kv["comm"]; c != "" {
		ev["process.name"] = auditStr(c)
	}
	if exe := auditStr(kv["exe"]); exe != "" && exe != "?" && exe != "(null)" {
		ev["process.executable"] = exe
		if _, ok := ev["process.name"]; !ok {
			ev["process.name"] = path.Base(exe)
		}
	}
	uid := func(field, v string) {
		if v != "" && v != "4294967295" && v != "-1" && v != "unset" {
			set(ev, field, v)
		}
	}
	uid("user.id", kv["uid"])
	uid("user.effective.id", kv["euid"])
	uid("user.audit.id", kv["auid"])
	if n := unq(kv["_UID"]); n != "" && n != "unset" {
		ev["user.name"] = n
	}
	if n := unq(kv["_AUID"]); n != "" && n != "unset" {
		ev["user.audit.name"] = n
	}
	if n := unq(kv["_EUID"]); n != "" && n != "unset" {
		ev["user.effective.name"] = n
	}
	if k := auditStr(kv["key"]); k != "" && k != "(null)" {
		addTag(ev, k)
	}
	switch kv["success"] {
	case "yes":
		ev["event.outcome"] = "success"
	case "no":
		ev["event.outcome"] = "failure"
	}
	switch kv["res"] {
	case "success", "1", "yes":
		ev["event.outcome"] = "success"
	case "failed", "0", "no":
		ev["event.outcome"] = "failure"
	}
	if primary.typ == "SYSCALL" {
		name := kv["syscall"]
		if kv["arch"] == "" || kv["arch"] == "c000003e" {
			if n, ok := syscalls[name]; ok {
				name = n
			}
		}
		ev["event.action"] = name
		switch name {
		case "execve", "execveat":
			ev["event.action"] = "executed"
			categorize(ev, "", []string{"process"}, []string{"start"})
		case "open", "openat", "creat":
			categorize(ev, "", []string{"file"}, []string{"access"})
		case "unlink", "unlinkat", "rmdir":
			categorize(ev, "", []string{"file"}, []string{"deletion"})
		case "rename", "renameat", "chmod", "fchmod", "fchmodat", "chown", "fchownat", "truncate", "link", "symlink":
			categorize(ev, "", []string{"file"}, []string{"change"})
		case "mkdir":
			categorize(ev, "", []string{"file"}, []string{"creation"})
		case "connect":
			categorize(ev, "", []string{"network"}, []string{"connection", "start"})
		case "bind", "accept":
			categorize(ev, "", []string{"network"}, []string{"connection"})
		case "init_module", "finit_module", "delete_module":
			categorize(ev, "", []string{"driver"}, []string{"change"})
		default:
			categorize(ev, "", []string{"process"}, []string{"info"})
		}
	} else {
		ev["event.action"] = strings.ToLower(primary.typ)
		if c, ok := auditCategory[primary.typ]; ok {
			categorize(ev, "", c.cat, c.typ)
		} else {
			categorize(ev, "", []string{"host"}, []string{"info"})
		}
		if acct := auditStr(kv["acct"]); acct != "" && acct != "?" {
			if strings.HasPrefix(primary.typ, "ADD_") || strings.HasPrefix(primary.typ, "DEL_") || primary.typ == "USER_MGMT" || primary.typ == "USER_CHAUTHTOK" {
				ev["user.target.name"] = acct
			} else {
				ev["user.name"] = acct
			}
		}
		if a := unq(kv["addr"]); a != "" && a != "?" {
			setIP(ev, "source.ip", "", a)
		}
		if h := unq(kv["hostname"]); h != "" && h != "?" {
			setIP(ev, "source.ip", "source.domain", h)
		}
		if cmd := kv["cmd"]; cmd != "" {
			ev["process.command_line"] = auditStr(cmd)
		}
		if op := unq(kv["op"]); op != "" {
			ev["event.reason"] = op
		}
	}
	for _, r := range recs {
		switch r.typ {
		case "EXECVE":
			argc, _ := atoi(r.kv["argc"])
			if argc > 4096 {
				argc = 4096
			}
			args := make([]string, 0, argc)
			for i := int64(0); i < argc; i++ {
				a, ok := r.kv["a"+strconv.FormatInt(i, 10)]
				if !ok {
					break
				}
				args = append(args, auditStr(a))
			}
			if len(args) > 0 {
				ev["process.args"] = args
				ev["process.command_line"] = strings.Join(args, " ")
			}
		case "CWD":
			set(ev, "process.working_directory", auditStr(r.kv["cwd"]))
		case "PATH":
			if _, ok := ev["file.path"]; !ok && r.kv["item"] == "0" && ev.String("event.action") != "executed" {
				set(ev, "file.path", auditStr(r.kv["name"]))
			}
		case "PROCTITLE":
			if _, ok := ev["process.command_line"]; !ok {
				set(ev, "process.command_line", auditStr(r.kv["proctitle"]))
			}
		case "SOCKADDR":
			// saddr is hex; not decoded here.
		}
	}
	return finish(in, ev)
}

// multiRecord lists the record types the kernel emits as parts of one
// event (closed by EOE); other types stand alone.
var multiRecord = map[string]bool{
	"SYSCALL": true, "EXECVE": true, "CWD": true, "PATH": true, "PROCTITLE": true, "SOCKADDR": true,
	"FD_PAIR": true, "BPRM_FCAPS": true, "CAPSET": true, "MMAP": true, "OBJ_PID": true, "IPC": true,
	"KERN_MODULE": true, "NETFILTER_CFG": true, "SOCKETCALL": true, "MQ_OPEN": true, "EXECVE_ARGS": true,
}

// AuditJoiner joins the records of one audit event by (node, serial).
// Groups end at an EOE record, when a record of the same node arrives more
// than MaxSkew later, when more than MaxPending groups are open (the oldest
// is emitted), or at Flush. Records that stand alone (USER_*, CRED_*, ...)
// are emitted at once. Nothing is dropped. Not safe for concurrent use.
type AuditJoiner struct {
	MaxPending int           // open groups kept; default 256
	MaxSkew    time.Duration // event-time age that closes a group; default 2s
	opts       *Options
	groups     map[auditKey]*auditGroup
	order      []auditKey
}

type auditGroup struct {
	in   *input
	recs []auditRecord
}

// NewAuditJoiner returns a joiner; opts may be nil.
func NewAuditJoiner(opts *Options) *AuditJoiner {
	if opts == nil {
		opts = &Options{}
	}
	opts.fill()
	return &AuditJoiner{MaxPending: 256, MaxSkew: 2 * time.Second, opts: opts, groups: map[auditKey]*auditGroup{}}
}

// Add takes one record and returns the events it completes (possibly none).
// A record that is not an audit record gives (nil, false).
func (j *AuditJoiner) Add(rec Record) ([]event.Event, bool) {
	in := newInput(rec, j.opts)
	r, ok := parseAuditRecord(in)
	if !ok {
		return nil, false
	}
	var out []event.Event
	// Close groups that are too old in event time.
	for len(j.order) > 0 {
		k := j.order[0]
		g := j.groups[k]
		if g != nil && r.ts.Sub(g.recs[0].ts) <= j.MaxSkew {
			break
		}
		out = append(out, j.emit(k)...)
	}
	if r.typ == "EOE" {
		// The end of a multi-record event: its line joins the group's
		// event.original. A stray EOE stands alone: nothing is dropped.
		g, open := j.groups[r.key()]
		if !open {
			return append(out, auditEvent(in, []auditRecord{r})), true
		}
		g.recs = append(g.recs, r)
		return append(out, j.emit(r.key())...), true
	}
	if !multiRecord[r.typ] {
		if _, open := j.groups[r.key()]; !open {
			return append(out, auditEvent(in, []auditRecord{r})), true
		}
	}
	k := r.key()
	g, open := j.groups[k]
	if open && len(g.recs) >= 64 {
		// A runaway group: emit what is there and start again.
		out = append(out, j.emit(k)...)
		open = false
	}
	if !open {
		g = &auditGroup{in: in}
		j.groups[k] = g
		j.order = append(j.order, k)
	}
	g.recs = append(g.recs, r)
	for len(j.order) > j.MaxPending {
		out = append(out, j.emit(j.order[0])...)
	}
	return out, true
}

func (j *AuditJoiner) emit(k auditKey) []event.Event {
	g, ok := j.groups[k]
	for i, o := range j.order {
		if o == k {
			j.order = append(j.order[:i], j.order[i+1:]...)
			break
		}
	}
	if !ok {
		return nil
	}
	delete(j.groups, k)
	return []event.Event{auditEvent(g.in, g.recs)}
}

// Flush emits every open group, oldest first.
func (j *AuditJoiner) Flush() []event.Event {
	var out []event.Event
	for len(j.order) > 0 {
		out = append(out, j.emit(j.order[0])...)
	}
	return out
}
