package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/http-tunnel/tunnel"
)

// tokenFields are the fields a line of a token file may give after its
// token, as tunnel.ParseStaticTokens reads them.
var tokenFields = []string{"subject", "names", "allow_ips", "deny_ips"}

// loadTokens returns the agent tokens of the file at path (none if path is
// empty), in the format of tunnel.ParseStaticTokens, followed by those of
// env, a comma-separated list, as one set, and how many tokens it holds.
// Errors name the file and line, never a token.
//
// The tokens of both sources go through one ParseStaticTokens, so that a
// token without a subject gets the same one as it did when the gateway
// took plain tokens (the subject is keyed by the whole set, and binds
// resumed tunnels on every node).
func loadTokens(path, env string) (*tunnel.StaticTokens, int, error) {
	var file []byte
	n := 0
	if path != "" {
		var err error
		if file, err = os.ReadFile(path); err != nil {
			return nil, 0, fmt.Errorf("tokens file: %w", err)
		}
		if n, err = countTokens(bytes.NewReader(file)); err != nil {
			return nil, 0, fmt.Errorf("tokens file %s: %w", path, err)
		}
	}
	fromEnv := splitList(env)
	for i, tok := range fromEnv {
		if strings.ContainsFunc(tok, unicode.IsSpace) || strings.HasPrefix(tok, "#") {
			return nil, 0, fmt.Errorf("$%s: token %d contains a space or starts with #, which a token may not", envTokens, i+1)
		}
	}
	n += len(fromEnv)
	all := io.MultiReader(bytes.NewReader(file), strings.NewReader("\n"+strings.Join(fromEnv, "\n")+"\n"))
	set, err := tunnel.ParseStaticTokens(all)
	if err != nil {
		// Only the file's lines can fail: they come first, so the line
		// numbers are the file's.
		return nil, 0, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return set, n, nil
}

// countTokens checks the lines of a token file that ParseStaticTokens
// would report by quoting them, and returns how many tokens the file
// holds. A field after the token that is not one of tokenFields is most
// likely a token with a space in it, or a second token on the line: its
// error shows neither.
func countTokens(r io.Reader) (int, error) {
	n := 0
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		n++
		for i, f := range strings.Fields(text)[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok || v == "" || !slices.Contains(tokenFields, k) {
				return 0, fmt.Errorf("line %d: field %d after the token is not one of %s= with a value (a token must not contain spaces)", line, i+1, strings.Join(tokenFields, "=, "))
			}
		}
	}
	return n, sc.Err()
}
