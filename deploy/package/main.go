// Command package builds the csirt-agent packages: it compiles
// cmd/csirt-agent and writes a .deb and an .rpm with nfpm (used as a
// library), holding the binary, the hardened systemd unit, the default
// configuration (a conffile kept on upgrade) and the documentation, with
// maintainer scripts that create the csirt-agent user and state directory.
//
//	go run ./deploy/package --version 0.1.0 --arch amd64 --out dist/
//
// writes dist/csirt-agent_0.1.0_amd64.deb and dist/csirt-agent-0.1.0.x86_64.rpm.
// The unit, scripts and files are embedded from deploy/package/files and
// deploy/package/scripts, so the command works from any directory inside
// the repository.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

//go:embed files scripts
var assets embed.FS

// Installed paths.
const (
	PathBinary  = "/usr/bin/csirt-agent"
	PathConfig  = "/etc/csirt-agent/agent.yml"
	PathUnitDeb = "/lib/systemd/system/csirt-agent.service"
	PathUnitRPM = "/usr/lib/systemd/system/csirt-agent.service"
	PathDoc     = "/usr/share/doc/csirt-agent"
	StateDir    = "/var/lib/csirt-agent"
)

// Options of Build.
type Options struct {
	Version string   // package version, e.g. 0.1.0 (semver; a leading v is dropped)
	Arch    string   // Go architecture: amd64, arm64
	Out     string   // output directory, created if missing
	Formats []string // "deb", "rpm"; default both
	// Binary is a csirt-agent built beforehand; empty: build it from the
	// repository that holds this package.
	Binary string
}

// Result lists the files written.
type Result struct {
	Files map[string]string // format -> path
}

var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+([-+~][0-9A-Za-z.+~-]*)?$`)

// archNames maps Go architectures to the deb and rpm names.
var archNames = map[string][2]string{
	"amd64": {"amd64", "x86_64"},
	"arm64": {"arm64", "aarch64"},
	"386":   {"i386", "i386"},
	"arm":   {"armhf", "armv7hl"},
}

// FileName is the package file name for a format.
func FileName(format, version, arch string) string {
	a := archNames[arch]
	if format == "rpm" {
		return fmt.Sprintf("csirt-agent-%s.%s.rpm", version, a[1])
	}
	return fmt.Sprintf("csirt-agent_%s_%s.deb", version, a[0])
}

func main() {
	var o Options
	formats := ""
	flag.StringVar(&o.Version, "version", "", "package version, e.g. 0.1.0 (required)")
	flag.StringVar(&o.Arch, "arch", "amd64", "target architecture (Go name): amd64, arm64, 386, arm")
	flag.StringVar(&o.Out, "out", "dist", "output directory")
	flag.StringVar(&formats, "formats", "deb,rpm", "package formats to write")
	flag.StringVar(&o.Binary, "binary", "", "use this csirt-agent binary instead of building it")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./deploy/package --version 0.1.0 [--arch amd64] [--out dist/]\n\n"+
			"Builds csirt-agent and writes its .deb and .rpm packages.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	o.Formats = strings.Split(formats, ",")
	res, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
	for _, f := range o.Formats {
		fmt.Println(res.Files[f])
	}
}

// Build compiles the agent (unless Options.Binary is set) and writes the
// packages.
func Build(o Options) (Result, error) {
	o.Version = strings.TrimPrefix(o.Version, "v")
	if !versionRE.MatchString(o.Version) {
		return Result{}, fmt.Errorf("--version %q: want a version like 0.1.0 or 0.1.0-rc1", o.Version)
	}
	if _, ok := archNames[o.Arch]; !ok {
		return Result{}, fmt.Errorf("--arch %q: want one of amd64, arm64, 386, arm", o.Arch)
	}
	if len(o.Formats) == 0 {
		o.Formats = []string{"deb", "rpm"}
	}
	for _, f := range o.Formats {
		if f != "deb" && f != "rpm" {
			return Result{}, fmt.Errorf("--formats: %q is not deb or rpm", f)
		}
	}
	if err := os.MkdirAll(o.Out, 0o750); err != nil {
		return Result{}, fmt.Errorf("creating output directory: %w", err)
	}
	stage, err := os.MkdirTemp("", "csirt-agent-package-")
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = os.RemoveAll(stage) }()
	if err := extractAssets(stage); err != nil {
		return Result{}, err
	}
	bin := o.Binary
	if bin == "" {
		bin = filepath.Join(stage, "csirt-agent")
		if err := buildAgent(o.Version, o.Arch, bin); err != nil {
			return Result{}, err
		}
	}
	res := Result{Files: map[string]string{}}
	for _, format := range o.Formats {
		path := filepath.Join(o.Out, FileName(format, o.Version, o.Arch))
		if err := writePackage(format, info(o, stage, bin), path); err != nil {
			return Result{}, fmt.Errorf("%s: %w", format, err)
		}
		res.Files[format] = path
	}
	return res, nil
}

// extractAssets writes the embedded files and scripts under dir, as nfpm
// reads its contents from files.
func extractAssets(dir string) error {
	return fs.WalkDir(assets, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o750)
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		return os.WriteFile(dst, b, mode)
	})
}

// repoRoot is the directory of the main module (go.mod).
func repoRoot() (string, error) {
	out, err := exec.CommandContext(context.Background(), "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository with `go env GOMOD`: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the repository: run from the platform's checkout")
	}
	return filepath.Dir(mod), nil
}

// buildAgent compiles cmd/csirt-agent, stripped, with cgo: live packet
// capture links libpcap (the package depends on it). Cross-building for
// another architecture needs that architecture's C compiler and libpcap
// (CC=aarch64-linux-gnu-gcc and libpcap-dev:arm64, for example).
func buildAgent(version, arch, out string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	//nolint:gosec // version is checked against versionRE; out is our staging path
	cmd := exec.CommandContext(context.Background(), "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./cmd/csirt-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building cmd/csirt-agent: %w", err)
	}
	return nil
}

// info describes the package; stage holds the extracted assets.
func info(o Options, stage, bin string) *nfpm.Info {
	asset := func(p string) string { return filepath.Join(stage, filepath.FromSlash(p)) }
	mode := func(m os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: m}
	}
	contents := files.Contents{
		{Source: bin, Destination: PathBinary, FileInfo: mode(0o755)},
		{Source: asset("files/csirt-agent.service"), Destination: PathUnitDeb, FileInfo: mode(0o644), Packager: "deb"},
		{Source: asset("files/csirt-agent.service"), Destination: PathUnitRPM, FileInfo: mode(0o644), Packager: "rpm"},
		{Destination: "/etc/csirt-agent", Type: files.TypeDir, FileInfo: mode(0o755)},
		{Source: asset("files/agent.yml"), Destination: PathConfig, Type: files.TypeConfigNoReplace, FileInfo: mode(0o644)},
		{Destination: PathDoc, Type: files.TypeDir, FileInfo: mode(0o755)},
		{Source: asset("files/README"), Destination: PathDoc + "/README", FileInfo: mode(0o644)},
		{Source: asset("files/copyright"), Destination: PathDoc + "/copyright", FileInfo: mode(0o644)},
	}
	in := &nfpm.Info{
		Name:     "csirt-agent",
		Arch:     o.Arch,
		Platform: "linux",
		Version:  o.Version,
		Release:  "1",
		Section:  "admin",
		Priority: "optional",
		// A placeholder address until the CSIRT names its packaging contact.
		Maintainer:  "CSIRT Toscana <csirt-agent@csirt-toscana.invalid>",
		Vendor:      "CSIRT Toscana",
		License:     "other",
		Description: "CSIRT Toscana agent: ships this server's logs to the regional CSIRT\nFollows log files and the systemd journal, keeps a bounded disk queue while\nthe CSIRT is unreachable, and sends signed batches over mutual TLS. When the\nCSIRT's policy turns it on, it also summarises network traffic (flows, DNS,\nTLS, HTTP; never payload) with libpcap.",
		Overridables: nfpm.Overridables{
			Contents: contents,
			Umask:    0o022,
			Scripts: nfpm.Scripts{
				PreInstall:  asset("scripts/preinstall.sh"),
				PostInstall: asset("scripts/postinstall.sh"),
				PreRemove:   asset("scripts/preremove.sh"),
				PostRemove:  asset("scripts/postremove.sh"),
			},
			RPM: nfpm.RPM{Summary: "CSIRT Toscana agent", Group: "System Environment/Daemons"},
		},
	}
	return in
}

// writePackage runs nfpm's packager for format into path.
func writePackage(format string, in *nfpm.Info, path string) error {
	switch format {
	case "deb":
		in.Depends = []string{"passwd", "libpcap0.8"} // useradd, groupadd, usermod; live capture
	case "rpm":
		in.Depends = []string{"shadow-utils", "libpcap"}
	}
	in = nfpm.WithDefaults(in)
	if err := nfpm.PrepareForPackager(in, format); err != nil {
		return err
	}
	p, err := nfpm.Get(format)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	if err := p.Package(in, f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
