package integration

import (
	"bytes"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The layout rules of the repository (docs/architecture.md), checked on
// the source so that a change that breaks one fails here rather than in a
// review: one idea per file in the root package, examples that use the
// public API alone, and backends that depend on the store and limiter
// interfaces, never on the gateway.
func TestLayout(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/http-tunnel/tunnel"

	// No file of the root package, tests aside, is over 450 lines.
	const maxLines = 450
	files, err := filepath.Glob(filepath.Join(root, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n > maxLines {
			t.Errorf("%s has %d lines; the root package keeps files under %d (split it by idea)", filepath.Base(f), n, maxLines)
		}
	}

	// imports returns the import paths of every Go file under dir.
	imports := func(dir string) map[string][]string {
		out := map[string][]string{}
		fset := token.NewFileSet()
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") {
				return nil
			}
			f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			for _, im := range f.Imports {
				path, _ := strconv.Unquote(im.Path.Value)
				out[rel] = append(out[rel], path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// Examples use what a user can import.
	for file, paths := range imports(filepath.Join(root, "examples")) {
		for _, p := range paths {
			if strings.HasPrefix(p, module+"/internal/") {
				t.Errorf("%s imports %s; examples import no internal package", file, p)
			}
		}
	}
	// Backends depend on the interfaces they implement, never on the
	// gateway (package tunnel) that uses them.
	for _, dir := range []string{"store", "ratelimit"} {
		for file, paths := range imports(filepath.Join(root, dir)) {
			for _, p := range paths {
				if p == module {
					t.Errorf("%s imports the root package; backends never do", file)
				}
			}
		}
	}
}
