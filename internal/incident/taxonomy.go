package incident

import (
	"slices"
	"strings"

	"github.com/csirt-toscana/platform/internal/finding"
)

// Category is a class and type of the ENISA / TF-CSIRT Reference Security
// Incident Taxonomy (RSIT), in its machine-readable values joined by a
// dot: "intrusion-attempts.brute-force".
type Category string

// Categories the incident stage assigns (docs/incidents.md has the table).
const (
	CategoryBruteForce     Category = "intrusion-attempts.brute-force"
	CategoryExploit        Category = "intrusion-attempts.exploit"
	CategoryIDSAlert       Category = "intrusion-attempts.ids-alert"
	CategoryScanner        Category = "information-gathering.scanner"
	CategoryInfected       Category = "malicious-code.infected-system"
	CategoryPrivileged     Category = "intrusions.privileged-account-compromise"
	CategoryUnprivileged   Category = "intrusions.unprivileged-account-compromise"
	CategorySystem         Category = "intrusions.system-compromise"
	CategoryApplication    Category = "intrusions.application-compromise"
	CategoryDataLeak       Category = "information-content-security.data-leak"
	CategoryModification   Category = "information-content-security.unauthorised-information-modification"
	CategoryResourceMisuse Category = "fraud.unauthorised-use-of-resources"
	CategoryOutage         Category = "availability.outage"
	CategoryDoS            Category = "availability.dos"
	CategoryUndetermined   Category = "other.undetermined"
)

// Taxonomy is the RSIT: each class with its types (machine-readable
// values of the taxonomy's current version).
var Taxonomy = map[string][]string{
	"abusive-content":              {"spam", "harmful-speech", "violence"},
	"malicious-code":               {"infected-system", "c2-server", "malware-distribution", "malware-configuration"},
	"information-gathering":        {"scanner", "sniffing", "social-engineering"},
	"intrusion-attempts":           {"ids-alert", "brute-force", "exploit"},
	"intrusions":                   {"privileged-account-compromise", "unprivileged-account-compromise", "application-compromise", "system-compromise", "burglary"},
	"availability":                 {"dos", "ddos", "misconfiguration", "sabotage", "outage"},
	"information-content-security": {"unauthorised-information-access", "unauthorised-information-modification", "data-loss", "data-leak"},
	"fraud":                        {"unauthorised-use-of-resources", "copyright", "masquerade", "phishing"},
	"vulnerable":                   {"weak-crypto", "ddos-amplifier", "potentially-unwanted-accessible", "information-disclosure", "vulnerable-system"},
	"other":                        {"other", "undetermined"},
	"test":                         {"test"},
}

// Valid reports whether c is a class.type of Taxonomy.
func (c Category) Valid() bool {
	class, typ, ok := strings.Cut(string(c), ".")
	return ok && slices.Contains(Taxonomy[class], typ)
}

// Class is the category's class ("intrusion-attempts").
func (c Category) Class() string { class, _, _ := strings.Cut(string(c), "."); return class }

// aliases maps names of the taxonomy's earlier editions (and the rule
// library's csirt.enisa.* tags written with them) to current values.
var aliases = map[string]Category{
	"intrusion-attempts.login-attempts":                        CategoryBruteForce,
	"intrusion-attempts.exploitation-of-known-vulnerabilities": CategoryIDSAlert,
	"intrusion-attempts.new-attack-signature":                  CategoryExploit,
	"information-gathering.scanning":                           CategoryScanner,
	"intrusion.system-compromise":                              CategorySystem,
	"intrusion.privileged-account-compromise":                  CategoryPrivileged,
	"intrusion.unprivileged-account-compromise":                CategoryUnprivileged,
	"intrusion.application-compromise":                         CategoryApplication,
	"fraud.misuse-of-resources":                                CategoryResourceMisuse,
	"fraud.unauthorized-use-of-resources":                      CategoryResourceMisuse,
	"malicious-code.ransomware":                                CategoryInfected,
	"malicious-code.c2server":                                  Category("malicious-code.c2-server"),
}

// ParseCategory normalises a class.type (current or earlier-edition
// names, any case, "_" for "-"); ok is false when it is not in the
// taxonomy.
func ParseCategory(s string) (Category, bool) {
	s = strings.ToLower(strings.TrimSpace(strings.ReplaceAll(s, "_", "-")))
	if c := Category(s); c.Valid() {
		return c, true
	}
	if c, ok := aliases[s]; ok {
		return c, true
	}
	return "", false
}

// techniqueCategories maps ATT&CK techniques (or their parent) to a
// category.
var techniqueCategories = map[string]Category{
	"T1110": CategoryBruteForce,     // Brute Force
	"T1190": CategoryExploit,        // Exploit Public-Facing Application
	"T1203": CategoryExploit,        // Exploitation for Client Execution
	"T1595": CategoryScanner,        // Active Scanning
	"T1046": CategoryScanner,        // Network Service Discovery
	"T1087": CategoryScanner,        // Account Discovery (user enumeration)
	"T1071": CategoryInfected,       // Application Layer Protocol (C2)
	"T1568": CategoryInfected,       // Dynamic Resolution
	"T1572": CategoryInfected,       // Protocol Tunneling
	"T1486": CategoryInfected,       // Data Encrypted for Impact (ransomware)
	"T1496": CategoryResourceMisuse, // Resource Hijacking
	"T1048": CategoryDataLeak,       // Exfiltration Over Alternative Protocol
	"T1041": CategoryDataLeak,       // Exfiltration Over C2 Channel
	"T1548": CategoryPrivileged,     // Abuse Elevation Control Mechanism
	"T1136": CategorySystem,         // Create Account
	"T1098": CategorySystem,         // Account Manipulation
	"T1078": CategoryUnprivileged,   // Valid Accounts
	"T1498": CategoryDoS,            // Network Denial of Service
	"T1499": CategoryDoS,            // Endpoint Denial of Service
}

// groupCategories maps words in rule groups to a category; the first
// word found in the group wins (the list is in priority order).
var groupCategories = []struct {
	word string
	cat  Category
}{
	{"brute", CategoryBruteForce},
	{"password-guess", CategoryBruteForce},
	{"login", CategoryBruteForce},
	{"enumeration", CategoryScanner},
	{"scan", CategoryScanner},
	{"discovery", CategoryScanner},
	{"exploit", CategoryExploit},
	{"web-attack", CategoryExploit},
	{"beacon", CategoryInfected},
	{"c2", CategoryInfected},
	{"tunnel", CategoryInfected},
	{"malware", CategoryInfected},
	{"ransom", CategoryInfected},
	{"exfil", CategoryDataLeak},
	{"volume", CategoryDataLeak},
	{"privilege", CategoryPrivileged},
	{"sudo", CategoryPrivileged},
	{"account", CategorySystem},
	{"persistence", CategorySystem},
	{"mining", CategoryResourceMisuse},
	{"dos", CategoryDoS},
}

// tacticCategories maps ATT&CK tactics to a category.
var tacticCategories = map[string]Category{
	"reconnaissance":       CategoryScanner,
	"discovery":            CategoryScanner,
	"credential-access":    CategoryBruteForce,
	"initial-access":       CategoryExploit,
	"execution":            CategorySystem,
	"persistence":          CategorySystem,
	"privilege-escalation": CategoryPrivileged,
	"defense-evasion":      CategorySystem,
	"lateral-movement":     CategorySystem,
	"command-and-control":  CategoryInfected,
	"exfiltration":         CategoryDataLeak,
	"collection":           CategoryDataLeak,
	"impact":               Category("availability.sabotage"),
}

// tactics of ATT&CK Enterprise, in the tags' dash form.
var attackTactics = []string{"reconnaissance", "resource-development", "initial-access", "execution", "persistence",
	"privilege-escalation", "defense-evasion", "credential-access", "discovery", "lateral-movement", "collection",
	"command-and-control", "exfiltration", "impact"}

// Tactics returns the ATT&CK tactics named by the finding's tags
// ("attack.credential-access" or "attack.credential_access").
func Tactics(f *finding.Finding) []string {
	var out []string
	for _, t := range f.Tags {
		name, ok := strings.CutPrefix(strings.ToLower(t), "attack.")
		if !ok {
			continue
		}
		name = strings.ReplaceAll(name, "_", "-")
		if slices.Contains(attackTactics, name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Categorize chooses the ENISA category of a finding, from the most to
// the least specific evidence: a csirt.enisa.<class>.<type> tag of its
// rule; its ATT&CK techniques; its rule group; its ATT&CK tactics; its
// kind (integrity: unauthorised modification, coverage: outage, intel:
// ids-alert). Anything else is other.undetermined.
func Categorize(f *finding.Finding) Category {
	for _, t := range f.Tags {
		if rest, ok := strings.CutPrefix(strings.ToLower(t), "csirt.enisa."); ok {
			if c, ok := ParseCategory(rest); ok {
				return c
			}
		}
	}
	for _, tech := range f.Techniques {
		parent, _, _ := strings.Cut(strings.ToUpper(tech), ".")
		if c, ok := techniqueCategories[parent]; ok {
			return c
		}
	}
	for _, t := range f.Tags {
		if rest, ok := strings.CutPrefix(strings.ToLower(t), "attack.t"); ok {
			parent, _, _ := strings.Cut(rest, ".")
			if c, ok := techniqueCategories["T"+strings.ToUpper(parent)]; ok {
				return c
			}
		}
	}
	switch f.Kind {
	case finding.KindIntegrity:
		return CategoryModification
	case finding.KindCoverage:
		return CategoryOutage
	}
	g := strings.ToLower(strings.ReplaceAll(f.RuleGroup, "_", "-"))
	for _, gc := range groupCategories {
		if g != "" && strings.Contains(g, gc.word) {
			return gc.cat
		}
	}
	for _, tac := range Tactics(f) {
		if c, ok := tacticCategories[tac]; ok {
			return c
		}
	}
	if f.Kind == finding.KindIntel {
		return CategoryIDSAlert
	}
	return CategoryUndetermined
}
