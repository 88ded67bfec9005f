package parse

import (
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
)

// Sudo parses sudo's log lines: commands run (user, target user, tty, pwd,
// command), refusals (user NOT in sudoers, incorrect password attempts,
// command not allowed) and its PAM lines.
//
// ECS has no keyword field for a terminal: the tty stays in message.
type Sudo struct{ opts *Options }

var _ messageParser = (*Sudo)(nil)

func (*Sudo) Name() string { return "sudo" }

func (p *Sudo) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

func (*Sudo) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "system"
	if _, ok := ev["process.name"]; !ok {
		ev["process.name"] = "sudo"
	}
	msg := strings.TrimSpace(in.msg)
	if parsePAM(msg, ev) {
		return nil
	}
	// "vagrant : TTY=pts/0 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/ls"
	// "tsg : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/ls"
	user, rest, ok := strings.Cut(msg, " : ")
	if !ok || strings.ContainsAny(strings.TrimSpace(user), " \t") {
		categorize(ev, "", []string{"process"}, []string{"info"})
		return nil
	}
	set(ev, "user.name", strings.TrimSpace(user))
	var problem string
	for _, part := range strings.Split(rest, " ; ") {
		k, v, isKV := strings.Cut(part, "=")
		if !isKV || strings.ContainsAny(k, " ") {
			problem = strings.TrimSpace(part)
			continue
		}
		switch k {
		case "PWD":
			set(ev, "process.working_directory", v)
		case "USER":
			set(ev, "user.effective.name", v)
			set(ev, "user.target.name", v)
		case "GROUP":
			set(ev, "group.name", v)
		case "COMMAND":
			args := strings.Fields(v)
			if len(args) == 0 {
				continue
			}
			ev["process.command_line"] = v
			ev["process.args"] = args
			if strings.HasPrefix(args[0], "/") {
				ev["process.executable"] = args[0]
			}
		}
	}
	if problem == "" {
		categorize(ev, "", []string{"process"}, []string{"start"})
		ev["event.action"] = "sudo_command"
		ev["event.outcome"] = "success"
		return nil
	}
	categorize(ev, "", []string{"process", "authentication"}, []string{"info", "denied"})
	ev["event.outcome"] = "failure"
	ev["event.reason"] = problem
	switch {
	case strings.Contains(problem, "incorrect password"):
		ev["event.action"] = "sudo_auth_failure"
	case strings.Contains(problem, "password is required"):
		ev["event.action"] = "sudo_auth_failure"
	default:
		ev["event.action"] = "sudo_denied"
	}
	return nil
}

// Su parses su's log lines (shadow-utils and util-linux formats) and its
// PAM lines. user.name is who ran su; user.target.name and
// user.effective.name the account switched to.
type Su struct{ opts *Options }

var _ messageParser = (*Su)(nil)

func (*Su) Name() string { return "su" }

func (p *Su) Parse(rec Record) (event.Event, error) { return runMessage(p, rec, p.opts) }

func (*Su) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "system"
	if _, ok := ev["process.name"]; !ok {
		ev["process.name"] = "su"
	}
	msg := strings.TrimSpace(in.msg)
	if parsePAM(msg, ev) {
		return nil
	}
	outcome := ""
	var from, to string
	switch {
	case strings.HasPrefix(msg, "Successful su for "), strings.HasPrefix(msg, "FAILED su for "):
		// "Successful su for root by alice"
		outcome = "success"
		if msg[0] == 'F' {
			outcome = "failure"
		}
		_, rest, _ := strings.Cut(msg, " for ")
		to, from, _ = strings.Cut(rest, " by ")
	case strings.HasPrefix(msg, "+ "), strings.HasPrefix(msg, "- "):
		// "+ pts/0 alice:root"
		outcome = "success"
		if msg[0] == '-' {
			outcome = "failure"
		}
		f := strings.Fields(msg)
		if len(f) == 3 {
			from, to, _ = strings.Cut(f[2], ":")
		}
	case strings.HasPrefix(msg, "(to "), strings.HasPrefix(msg, "FAILED SU (to "):
		// util-linux: "(to root) alice on pts/0", "FAILED SU (to root) alice on pts/0"
		outcome = "success"
		if strings.HasPrefix(msg, "FAILED") {
			outcome = "failure"
		}
		_, rest, _ := strings.Cut(msg, "(to ")
		to, rest, _ = strings.Cut(rest, ") ")
		from, _, _ = strings.Cut(rest, " on ")
	default:
		categorize(ev, "", []string{"authentication"}, []string{"info"})
		return nil
	}
	set(ev, "user.name", strings.TrimSpace(from))
	set(ev, "user.target.name", strings.TrimSpace(to))
	set(ev, "user.effective.name", strings.TrimSpace(to))
	categorize(ev, "", []string{"authentication"}, []string{"info"})
	if outcome == "success" {
		ev["event.category"] = []string{"authentication", "session"}
		ev["event.type"] = []string{"info", "start"}
	}
	ev["event.action"] = "su"
	ev["event.outcome"] = outcome
	return nil
}
