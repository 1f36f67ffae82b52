package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// FileVars may each be given instead as <NAME>_FILE: the path of a file
// (a mounted Kubernetes Secret) that holds the value. Surrounding white
// space is dropped; in the lists (STRIPE_WEBHOOK_SECRET,
// STRIPE_IP_ALLOWLIST) a line break separates like a comma, and in
// STRIPE_IP_ALLOWLIST a '#' starts a comment.
var FileVars = []string{"STRIPE_WEBHOOK_SECRET", "DATABASE_URL", "REDIS_PASSWORD", "WEBUI_PASSWORD",
	"STRIPE_API_KEY", "STRIPE_IP_ALLOWLIST", "REDIS_SENTINEL_PASSWORD"}

// listVars are the FileVars that hold comma-separated lists.
var listVars = map[string]bool{"STRIPE_WEBHOOK_SECRET": true, "STRIPE_IP_ALLOWLIST": true}

// ReadFileVar reads the value of variable name from the file at path, as
// load does for <name>_FILE. Its errors never quote the file's content.
func ReadFileVar(name, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s_FILE: cannot read %s: %v", name, path, err)
	}
	v := strings.TrimSpace(string(b))
	if name == "STRIPE_IP_ALLOWLIST" { // '#' starts a comment (a secret may hold one)
		lines := strings.Split(v, "\n")
		for i, l := range lines {
			lines[i], _, _ = strings.Cut(l, "#")
		}
		v = strings.TrimSpace(strings.Join(lines, "\n"))
		if v == "" {
			// A failed download of Stripe's list must not let every address in.
			return "", fmt.Errorf("%s_FILE: %s lists no address (an empty list would accept deliveries from anywhere; unset %s_FILE to turn the allowlist off)", name, path, name)
		}
	}
	if listVars[name] {
		v = strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }), ",")
	}
	return v, nil
}

// readFileVars sets vars[NAME] from the file named by vars[NAME_FILE], for
// each variable of FileVars among reads (the variables a command reads).
// NAME and NAME_FILE both set, or a file that cannot be read, is a problem.
func readFileVars(vars map[string]string, reads []string) error {
	var p problems
	for _, name := range FileVars {
		path, ok := vars[name+"_FILE"]
		if !ok || !slices.Contains(reads, name) {
			continue
		}
		if _, both := vars[name]; both {
			p.add(fmt.Sprintf("%s and %s_FILE are both set: set one", name, name))
			continue
		}
		v, err := ReadFileVar(name, path)
		if err != nil {
			p.add(err.Error())
			continue
		}
		vars[name] = v
	}
	return p.err()
}
