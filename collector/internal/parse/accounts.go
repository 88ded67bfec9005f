package parse

import (
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// Accounts parses the account-management tools of shadow-utils: useradd,
// usermod, userdel, passwd, chpasswd, chage, groupadd, groupmod, groupdel,
// gpasswd. Events have category iam; user.name is the account changed.
type Accounts struct{ opts *Options }

var _ messageParser = (*Accounts)(nil)

func (*Accounts) Name() string { return "accounts" }

func (p *Accounts) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

// accountPrograms are the programs whose lines Accounts parses.
var accountPrograms = []string{"useradd", "usermod", "userdel", "passwd", "chpasswd", "chage",
	"groupadd", "groupmod", "groupdel", "gpasswd", "adduser", "deluser", "addgroup", "delgroup", "newusers"}

// kvList parses "name=apache, UID=48, GID=48, home=/x, shell=/y".
func kvList(s string) map[string]string {
	kv := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			kv[strings.ToLower(k)] = v
		}
	}
	return kv
}

// quoted returns the quoted names in s: "add 'bob' to group 'sudo'".
func quoted(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '\'')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i+1:], '\'')
		if j < 0 {
			return out
		}
		out = append(out, s[i+1:i+1+j])
		s = s[i+j+2:]
	}
}

func (*Accounts) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "system"
	msg := strings.TrimSpace(in.msg)
	if parsePAM(msg, ev) {
		return nil
	}
	iam := func(typ ...string) { categorize(ev, "", []string{"iam"}, typ); ev["event.outcome"] = "success" }
	q := quoted(msg)
	switch {
	case strings.HasPrefix(msg, "new user: "):
		kv := kvList(msg[len("new user: "):])
		set(ev, "user.name", kv["name"])
		set(ev, "user.id", kv["uid"])
		set(ev, "group.id", kv["gid"])
		iam("user", "creation")
		ev["event.action"] = "user_add"
	case strings.HasPrefix(msg, "new group: "), strings.HasPrefix(msg, "group added to "):
		_, rest, _ := strings.Cut(msg, ": ")
		kv := kvList(rest)
		set(ev, "group.name", kv["name"])
		set(ev, "group.id", kv["gid"])
		iam("group", "creation")
		ev["event.action"] = "group_add"
	case strings.HasPrefix(msg, "add ") && len(q) == 2 && strings.Contains(msg, " to "):
		set(ev, "user.name", q[0])
		set(ev, "group.name", q[1])
		iam("group", "change")
		ev["event.action"] = "group_member_add"
	case (strings.HasPrefix(msg, "delete ") || strings.HasPrefix(msg, "removed ")) && strings.Contains(msg, " from group ") && len(q) == 2:
		set(ev, "user.name", q[0])
		set(ev, "group.name", q[1])
		iam("group", "change")
		ev["event.action"] = "group_member_remove"
	case strings.HasPrefix(msg, "delete user "):
		set(ev, "user.name", firstOr(q, strings.TrimSpace(msg[len("delete user "):])))
		iam("user", "deletion")
		ev["event.action"] = "user_delete"
	case strings.HasPrefix(msg, "group ") && strings.Contains(msg, "removed"), strings.HasPrefix(msg, "removed group "):
		set(ev, "group.name", firstOr(q, ""))
		iam("group", "deletion")
		ev["event.action"] = "group_delete"
	case strings.HasPrefix(msg, "change user name "):
		if len(q) == 2 {
			set(ev, "user.name", q[1])
			set(ev, "user.changes.name", q[0])
		}
		iam("user", "change")
		ev["event.action"] = "user_rename"
	case strings.Contains(msg, "password") && (strings.HasPrefix(msg, "change user ") || strings.HasPrefix(msg, "password for ")):
		// "change user 'bob' password", "password for 'bob' changed by 'root'"
		set(ev, "user.name", firstOr(q, ""))
		iam("user", "change")
		ev["event.action"] = "password_changed"
	case strings.HasPrefix(msg, "lock user "), strings.HasPrefix(msg, "unlock user "):
		set(ev, "user.name", firstOr(q, ""))
		iam("user", "change")
		ev["event.action"] = strings.Fields(msg)[0] + "_user"
	case strings.HasPrefix(msg, "change user "):
		set(ev, "user.name", firstOr(q, ""))
		iam("user", "change")
		ev["event.action"] = "user_modify"
	case strings.HasPrefix(msg, "failed adding user "), strings.HasPrefix(msg, "failed "):
		set(ev, "user.name", firstOr(q, ""))
		categorize(ev, "", []string{"iam"}, []string{"user", "info"})
		ev["event.outcome"] = "failure"
		ev["event.action"] = "user_change_failed"
	default:
		categorize(ev, "", []string{"iam"}, []string{"info"})
	}
	return nil
}

func firstOr(l []string, def string) string {
	if len(l) > 0 {
		return l[0]
	}
	return def
}
