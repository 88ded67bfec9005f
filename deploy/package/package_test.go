package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/csirt-toscana/platform/internal/testenv"
)

const testVersion = "0.1.0-test1"

var (
	buildOnce sync.Once
	built     Result
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// packages builds the .deb and .rpm once for all tests.
func packages(t *testing.T) Result {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "csirt-agent-pkg-test-")
		if buildErr == nil {
			built, buildErr = Build(Options{Version: testVersion, Arch: "amd64", Out: buildDir})
		}
	})
	if buildErr != nil {
		t.Fatalf("building the packages: %v", buildErr)
	}
	return built
}

// need returns the path of a tool, failing in CI and skipping elsewhere
// when it is missing.
func need(t *testing.T, tool, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		msg := tool + " is not installed (Debian package " + debianPackage + "; deploy/dev/packages installs it)"
		testenv.Unavailable(t, msg)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestBuildRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Version: "latest", Arch: "amd64", Out: t.TempDir()},
		{Version: "1.2", Arch: "amd64", Out: t.TempDir()},
		{Version: "0.1.0", Arch: "sparc", Out: t.TempDir()},
		{Version: "0.1.0", Arch: "amd64", Out: t.TempDir(), Formats: []string{"apk"}},
	} {
		if _, err := Build(o); err == nil {
			t.Errorf("Build(%+v) accepted bad options", o)
		}
	}
	if got := FileName("rpm", "0.1.0", "amd64"); got != "csirt-agent-0.1.0.x86_64.rpm" {
		t.Errorf("rpm file name %q", got)
	}
	if got := FileName("deb", "0.1.0", "amd64"); got != "csirt-agent_0.1.0_amd64.deb" {
		t.Errorf("deb file name %q", got)
	}
}

// unitDirectives reads the embedded unit: directive -> values.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	b, err := assets.ReadFile("files/csirt-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unit line without '=': %q", l)
		}
		m[k] = append(m[k], v)
	}
	return m
}

func TestUnitIsHardened(t *testing.T) {
	d := unitDirectives(t)
	want := map[string]string{
		"User": "csirt-agent", "Group": "csirt-agent",
		"ExecStart":      "/usr/bin/csirt-agent run --config /etc/csirt-agent/agent.yml",
		"StateDirectory": "csirt-agent", "StateDirectoryMode": "0750",
		"ProtectSystem": "strict", "ReadWritePaths": "/var/lib/csirt-agent",
		"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
		"SystemCallArchitectures": "native", "SystemCallFilter": "@system-service",
		"CapabilityBoundingSet": "CAP_NET_RAW", "AmbientCapabilities": "CAP_NET_RAW",
		"SupplementaryGroups": "adm systemd-journal", "Restart": "on-failure",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"RestartSec", "MemoryMax"} {
		if len(d[k]) != 1 {
			t.Errorf("%s missing", k)
		}
	}
}

// debPaths lists the paths a .deb holds ("/etc", "/etc/csirt-agent", ...).
func debPaths(t *testing.T, deb string) []string {
	t.Helper()
	var paths []string
	out := run(t, "dpkg-deb", "-c", deb)
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			continue
		}
		p := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		if p != "" {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths
}

func TestPackageContents(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	res := packages(t)
	deb := res.Files["deb"]
	paths := debPaths(t, deb)
	for _, p := range []string{PathBinary, PathConfig, PathUnitDeb, PathDoc + "/README", PathDoc + "/copyright"} {
		if !contains(paths, p) {
			t.Errorf("the .deb lacks %s (has %v)", p, paths)
		}
	}
	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != PathConfig {
		t.Errorf("conffiles = %q (%v), want %s", conffiles, err, PathConfig)
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctrl, s))
		if err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("maintainer script %s missing or not executable: %v", s, err)
		}
		run(t, "sh", "-n", filepath.Join(ctrl, s))
	}
	if f := run(t, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture"); !strings.Contains(f, "csirt-agent") || !strings.Contains(f, "0.1.0~test1") && !strings.Contains(f, "0.1.0-test1") || !strings.Contains(f, "amd64") {
		t.Errorf("control fields: %s", f)
	}

	// Live capture: the binary links libpcap and the package depends on it.
	if d := run(t, "dpkg-deb", "-f", deb, "Depends"); !strings.Contains(d, "libpcap0.8") {
		t.Errorf("the .deb does not depend on libpcap0.8: Depends: %s", d)
	}
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	if need(t, "readelf", "binutils") != "" {
		if dyn := run(t, "readelf", "-d", filepath.Join(root, PathBinary)); !strings.Contains(dyn, "libpcap.so") {
			t.Errorf("the packaged binary does not link libpcap (built without cgo?):\n%s", dyn)
		}
	}

	rpmBin := need(t, "rpm", "rpm")
	rpmFile := res.Files["rpm"]
	if req := run(t, rpmBin, "-qpR", rpmFile); !strings.Contains(req, "libpcap") {
		t.Errorf("the .rpm does not require libpcap:\n%s", req)
	}
	list := run(t, rpmBin, "-qlp", rpmFile)
	for _, p := range []string{PathBinary, PathConfig, PathUnitRPM, PathDoc + "/README", PathDoc + "/copyright"} {
		if !contains(strings.Split(strings.TrimSpace(list), "\n"), p) {
			t.Errorf("the .rpm lacks %s (has %s)", p, list)
		}
	}
	if c := strings.TrimSpace(run(t, rpmBin, "-qpc", rpmFile)); c != PathConfig {
		t.Errorf("rpm config files: %q", c)
	}
	scripts := run(t, rpmBin, "-qp", "--scripts", rpmFile)
	for _, s := range []string{"preinstall scriptlet", "postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "useradd --system"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("rpm scripts lack %q", s)
		}
	}
	t.Logf("rpm -qlp %s:\n%s", filepath.Base(rpmFile), list)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// existing returns the paths that exist now.
func existing(paths []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			m[p] = true
		}
	}
	return m
}

func dpkgStatus(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", pkg).Output()
	if err != nil {
		return "not-installed"
	}
	return strings.TrimSpace(string(out))
}

func purge(t *testing.T) {
	t.Helper()
	if dpkgStatus("csirt-agent") != "not-installed" {
		if out, err := exec.Command("dpkg", "--purge", "csirt-agent").CombinedOutput(); err != nil {
			t.Logf("cleanup: dpkg --purge csirt-agent: %v\n%s", err, out)
		}
	}
}

// TestDebInstallRemovePurge is the packaging acceptance: as root, on this
// machine, install the .deb with dpkg, check the user, state directory,
// binary and unit, then remove (conffile and state kept), reinstall
// (enrolment kept), and purge (nothing left).
func TestDebInstallRemovePurge(t *testing.T) {
	if os.Geteuid() != 0 {
		msg := "installing the .deb needs root (run the tests as root)"
		testenv.Unavailable(t, msg)
	}
	need(t, "dpkg", "dpkg")
	analyze := need(t, "systemd-analyze", "systemd")
	deb := packages(t).Files["deb"]
	purge(t)
	t.Cleanup(func() { purge(t) })
	if _, err := os.Lstat(StateDir); err == nil {
		t.Fatalf("%s exists before the install (left by something else?): remove it first", StateDir)
	}

	paths := debPaths(t, deb)
	before := existing(paths)

	t.Log(run(t, "dpkg", "-i", deb))
	if st := dpkgStatus("csirt-agent"); st != "install ok installed" {
		t.Fatalf("dpkg status after install: %q", st)
	}

	// The user: a system account with no login and no home.
	u, err := user.Lookup("csirt-agent")
	if err != nil {
		t.Fatalf("user csirt-agent: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	if uid >= 1000 || uid == 0 {
		t.Errorf("csirt-agent has uid %d, want a system uid (1..999)", uid)
	}
	if _, err := os.Stat(u.HomeDir); err == nil {
		t.Errorf("csirt-agent's home %s exists", u.HomeDir)
	}
	passwd := run(t, "getent", "passwd", "csirt-agent")
	if !strings.HasSuffix(strings.TrimSpace(passwd), "nologin") {
		t.Errorf("csirt-agent's shell: %s", passwd)
	}
	g, err := user.LookupGroup("csirt-agent")
	if err != nil {
		t.Fatalf("group csirt-agent: %v", err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"adm", "systemd-journal"} {
		if lg, err := user.LookupGroup(name); err == nil && !contains(gids, lg.Gid) {
			t.Errorf("csirt-agent is not in group %s (groups %v)", name, gids)
		}
	}

	// The state directory: 0750, owned by the agent.
	fi, err := os.Stat(StateDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o750 || strconv.Itoa(int(st.Uid)) != u.Uid || strconv.Itoa(int(st.Gid)) != g.Gid {
		t.Errorf("%s: mode %v uid %d gid %d, want drwxr-x--- %s:%s", StateDir, fi.Mode(), st.Uid, st.Gid, u.Uid, g.Gid)
	}
	if fi, err := os.Stat(PathConfig); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: %v %v", PathConfig, fi, err)
	}

	// The binary runs from the package path.
	if out := run(t, PathBinary, "version"); !strings.Contains(out, testVersion) {
		t.Errorf("%s version printed %q, want it to contain %s", PathBinary, out, testVersion)
	}
	// Its libpcap resolves (the dependency is installed), and it says how
	// to use the capture command.
	if out := run(t, "ldd", PathBinary); !strings.Contains(out, "libpcap.so") || strings.Contains(out, "not found") {
		t.Errorf("ldd %s:\n%s", PathBinary, out)
	}
	if out, err := exec.Command(PathBinary, "pcap").CombinedOutput(); err == nil || !strings.Contains(string(out), "Usage: csirt-agent pcap") {
		t.Errorf("%s pcap without files: %v\n%s", PathBinary, err, out)
	}

	// systemd accepts the unit.
	out, err := exec.Command(analyze, "verify", PathUnitDeb).CombinedOutput()
	t.Logf("systemd-analyze verify %s: %v\n%s", PathUnitDeb, err, out)
	if err != nil {
		t.Errorf("systemd-analyze verify refused the unit: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "csirt-agent.service:") {
			t.Errorf("systemd-analyze verify warns about the unit: %s", l)
		}
	}
	if sec, err := exec.Command(analyze, "security", "--offline=true", PathUnitDeb).CombinedOutput(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(sec)), "\n")
		t.Logf("systemd-analyze security: %s", lines[len(lines)-1])
	} else {
		t.Logf("systemd-analyze security --offline: %v", err)
	}

	// An enrolment: a file in the state directory that must survive removal.
	identity := filepath.Join(StateDir, "identity-test")
	if err := os.WriteFile(identity, []byte("enrolled"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Remove: only the conffile (and its directory) and the state stay.
	t.Log(run(t, "dpkg", "--remove", "csirt-agent"))
	if st := dpkgStatus("csirt-agent"); st != "deinstall ok config-files" {
		t.Errorf("dpkg status after remove: %q", st)
	}
	kept := map[string]bool{"/etc/csirt-agent": true, PathConfig: true}
	for p := range existing(paths) {
		if !before[p] && !kept[p] {
			t.Errorf("after dpkg --remove, %s is still there", p)
		}
	}
	for p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("after dpkg --remove, %s is gone: %v", p, err)
		}
	}
	if b, err := os.ReadFile(identity); err != nil || string(b) != "enrolled" {
		t.Errorf("after dpkg --remove, the state directory lost its content: %v", err)
	}
	if _, err := user.Lookup("csirt-agent"); err != nil {
		t.Errorf("after dpkg --remove, the user is gone: %v", err)
	}
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/csirt-agent.service"); err == nil {
		t.Error("after dpkg --remove, the unit is still enabled")
	}

	// Reinstall keeps the enrolment.
	run(t, "dpkg", "-i", deb)
	if b, err := os.ReadFile(identity); err != nil || string(b) != "enrolled" {
		t.Errorf("after reinstalling, the state directory lost its content: %v", err)
	}

	// Purge: nothing left.
	t.Log(run(t, "dpkg", "--purge", "csirt-agent"))
	if st := dpkgStatus("csirt-agent"); st != "not-installed" {
		t.Errorf("dpkg status after purge: %q", st)
	}
	after := existing(paths)
	for p := range after {
		if !before[p] {
			t.Errorf("after dpkg --purge, %s is still there", p)
		}
	}
	for p := range before {
		if !after[p] {
			t.Errorf("dpkg --purge removed %s, which existed before the install", p)
		}
	}
	if _, err := os.Lstat(StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after dpkg --purge, %s: %v", StateDir, err)
	}
	if _, err := user.Lookup("csirt-agent"); err == nil {
		t.Error("after dpkg --purge, the user csirt-agent still exists")
	}
	if _, err := user.LookupGroup("csirt-agent"); err == nil {
		t.Error("after dpkg --purge, the group csirt-agent still exists")
	}
}
