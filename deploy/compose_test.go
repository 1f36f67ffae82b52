package deploy_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
}

type composeService struct {
	Image       string            `json:"image"`
	Build       *composeBuild     `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

// The laptop stack: every service of ours runs an existing command with an
// environment its configuration accepts, and Redis does not evict.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Drop the x- extension keys (anchors), then decode the rest strictly.
	var top map[string]json.RawMessage
	if err := yaml.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for k := range top {
		if strings.HasPrefix(k, "x-") {
			delete(top, k)
		}
	}
	j, _ := json.Marshal(top)
	var cf composeFile
	dec := json.NewDecoder(strings.NewReader(string(j)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, want := range []string{"postgres", "redis", "migrate", "ingest", "worker", "webui"} {
		if _, ok := cf.Services[want]; !ok {
			t.Errorf("compose.yaml has no %s service", want)
		}
	}
	if cmd := strings.Join(cf.Services["redis"].Command, " "); !strings.Contains(cmd, "--maxmemory-policy noeviction") {
		t.Errorf("redis runs %q, without noeviction", cmd)
	}
	for name, s := range cf.Services {
		binary, ok := strings.CutPrefix(s.Image, "stripe-webhooks-")
		if !ok {
			continue
		}
		if s.Build != nil && s.Build.Dockerfile != "deploy/Dockerfile."+binary {
			t.Errorf("%s builds %s, its image is of %s", name, s.Build.Dockerfile, binary)
		}
		line := append([]string{"/" + binary}, s.Command...)
		cmd := commandOf(t, "compose "+name, line)
		var env []string
		for k, v := range s.Environment {
			if !slices.Contains(cmd.vars, k) {
				t.Errorf("compose %s sets %s, which %q does not read", name, k, line)
			}
			env = append(env, k+"="+v)
		}
		if err := cmd.load(env); err != nil {
			t.Errorf("compose %s: %v", name, err)
		}
	}
}
