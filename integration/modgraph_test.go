package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A program that imports the library and its test helpers gets a small
// module graph: no AWS SDK, Redis client, Lambda runtime, gRPC or
// Prometheus, which live in the backend and adapter modules. The test
// builds such a consumer against this checkout and counts.
func TestConsumerModuleGraph(t *testing.T) {
	t.Parallel()
	const maxModules = 20 // the consumer's own included
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/consumer\n\ngo 1.26.0\n\nrequire github.com/http-tunnel/tunnel v0.0.0\n\nreplace github.com/http-tunnel/tunnel => " + root + "\n",
		"main.go": `package main

import (
	"context"
	"net/http"

	"github.com/http-tunnel/tunnel"
)

func main() {
	ln, err := tunnel.Listen(context.Background(), "http://127.0.0.1:8080")
	if err != nil {
		panic(err)
	}
	http.Serve(ln, http.NotFoundHandler())
}
`,
		"main_test.go": `package main

import (
	"net/http"
	"testing"

	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestExpose(t *testing.T) { _ = tunneltest.Expose(t, http.NotFoundHandler()) }
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	goCmd("mod", "tidy")
	mods := strings.Fields(strings.ReplaceAll(goCmd("list", "-m", "-f", "{{.Path}}", "all"), "\n", " "))
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d modules, %d go.sum lines: %s", len(mods), strings.Count(string(sum), "\n"), strings.Join(mods, " "))
	if len(mods) > maxModules {
		t.Errorf("%d modules in the consumer's graph; want at most %d", len(mods), maxModules)
	}
	for _, banned := range []string{"aws", "redis", "jwt", "lambda", "grpc", "prometheus"} {
		for line := range strings.Lines(strings.Join(mods, "\n") + "\n" + string(sum)) {
			if strings.Contains(strings.ToLower(line), banned) {
				t.Errorf("the consumer's graph has %s: %s", banned, strings.TrimSpace(line))
			}
		}
	}
}
