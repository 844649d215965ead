package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// loadTokens returns the agent tokens of the file at path (none if path is
// empty) followed by those of env, a comma-separated list. Errors name the
// file and line, never a token.
func loadTokens(path, env string) ([]string, error) {
	var tokens []string
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		defer f.Close()
		tokens, err = parseTokens(f)
		if err != nil {
			return nil, fmt.Errorf("tokens file %s: %w", path, err)
		}
	}
	return append(tokens, splitList(env)...), nil
}

// parseTokens reads one token per line. Surrounding spaces are trimmed;
// blank lines and lines starting with '#' are ignored. A '#' later in a
// line is part of the token, since tokens may contain one.
func parseTokens(r io.Reader) ([]string, error) {
	var tokens []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		tok := strings.TrimSpace(sc.Text())
		if tok == "" || strings.HasPrefix(tok, "#") {
			continue
		}
		if strings.ContainsAny(tok, " \t") {
			return nil, fmt.Errorf("line %d: a token must not contain spaces", line)
		}
		tokens = append(tokens, tok)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return tokens, nil
}
