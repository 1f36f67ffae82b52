package deploy_test

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

type dockerfileInfo struct {
	stages     []string // FROM images, in order
	build      string   // the RUN line that builds the binary
	entrypoint string
	user       string
	copies     []string
}

func dockerfile(t *testing.T, binary string) dockerfileInfo {
	t.Helper()
	f, err := os.Open("Dockerfile." + binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var info dockerfileInfo
	var cont string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		word, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			img, _, _ := strings.Cut(rest, " ")
			info.stages = append(info.stages, img)
		case "RUN":
			if strings.Contains(rest, "go build") {
				info.build = rest
			}
		case "ENTRYPOINT":
			info.entrypoint = strings.Trim(rest, `[]" `)
		case "USER":
			info.user = rest
		case "COPY":
			info.copies = append(info.copies, rest)
		}
	}
	return info
}

// Each build file: a Go stage of the workspace's Go version, a static
// binary of the right package, a distroless non-root final stage.
func TestContainerBuilds(t *testing.T) {
	t.Parallel()
	work, err := os.ReadFile("../go.work")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(work)
	for _, binary := range []string{"ingest", "worker"} {
		df := dockerfile(t, binary)
		if len(df.stages) != 2 || df.stages[0] != "golang:"+string(goVersion[1])+"-bookworm" {
			t.Errorf("Dockerfile.%s stages %v: want golang:%s-bookworm then the runtime", binary, df.stages, goVersion[1])
		}
		if len(df.stages) == 2 && !strings.HasPrefix(df.stages[1], "gcr.io/distroless/static") || !strings.HasSuffix(df.stages[len(df.stages)-1], ":nonroot") {
			t.Errorf("Dockerfile.%s runs on %s, want distroless static nonroot", binary, df.stages[len(df.stages)-1])
		}
		if df.user != "65532:65532" {
			t.Errorf("Dockerfile.%s USER %q", binary, df.user)
		}
		if !strings.Contains(df.build, "CGO_ENABLED=0") || !strings.HasSuffix(df.build, "-o /out/"+binary+" ./"+binary) {
			t.Errorf("Dockerfile.%s builds with %q", binary, df.build)
		}
		if !slices.Contains(df.copies, "--from=build /out/"+binary+" /"+binary) || df.entrypoint != "/"+binary {
			t.Errorf("Dockerfile.%s: copies %v, entrypoint %s", binary, df.copies, df.entrypoint)
		}

		// Run the same build here and check the result is static.
		cmdline := df.build[strings.Index(df.build, "CGO_ENABLED=0"):]
		out := filepath.Join(t.TempDir(), binary)
		cmdline = strings.Replace(cmdline, "/out/"+binary, out, 1)
		cmd := exec.Command("sh", "-c", cmdline)
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmdline, err, b)
		}
		exe, err := elf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range exe.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked", binary)
			}
		}
		exe.Close()
	}
}

// .dockerignore keeps out what the build does not need and none of what it does.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", "..", "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v", err)
	}
	needed := regexp.MustCompile(`(^go\.work$|go\.mod$|go\.sum$|\.go$|^migrations/.*\.sql$|^pkg/stripefixture/testdata/)`)
	checked := 0
	for _, path := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !needed.MatchString(path) || strings.HasSuffix(path, "_test.go") {
			continue
		}
		checked++
		if ignored, _ := pm.MatchesOrParentMatches(path); ignored {
			t.Errorf(".dockerignore drops %s, which the build needs", path)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d build inputs checked", checked)
	}
	for _, path := range []string{".git/HEAD", "bin/ingest", ".dev/postgres/PG_VERSION", "ingest/run_test.go"} {
		if ignored, _ := pm.MatchesOrParentMatches(path); !ignored {
			t.Errorf(".dockerignore lets %s into the build context", path)
		}
	}
}
