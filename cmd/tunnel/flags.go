package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel/ratelimit"
)

// rateFlag is a flag.Value holding a rate limit written "N/unit": N events
// per second (s), minute (m) or hour (h), such as "10/m". The empty
// string, its zero value, means no limit.
type rateFlag struct {
	limit ratelimit.Limit
}

// rateUnits maps the units a rate may be written in to their periods.
var rateUnits = map[string]time.Duration{
	"s": time.Second,
	"m": time.Minute,
	"h": time.Hour,
}

// parseRate parses "N/unit" into a Limit of N events per unit, with the
// default burst (N). The empty string is an unlimited Limit.
func parseRate(s string) (ratelimit.Limit, error) {
	if s == "" {
		return ratelimit.Limit{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	if !ok {
		return ratelimit.Limit{}, fmt.Errorf("rate %q: want N/unit, such as 10/m", s)
	}
	events, err := strconv.Atoi(n)
	if err != nil || events <= 0 {
		return ratelimit.Limit{}, fmt.Errorf("rate %q: N must be a positive whole number", s)
	}
	period, ok := rateUnits[unit]
	if !ok {
		return ratelimit.Limit{}, fmt.Errorf("rate %q: unit must be s, m or h", s)
	}
	return ratelimit.Limit{Events: events, Period: period}, nil
}

// String returns the rate in the form Set accepts; "" when unlimited.
func (r *rateFlag) String() string {
	if r == nil || r.limit.Unlimited() {
		return ""
	}
	for unit, period := range rateUnits {
		if period == r.limit.Period {
			return strconv.Itoa(r.limit.Events) + "/" + unit
		}
	}
	return fmt.Sprintf("%d/%v", r.limit.Events, r.limit.Period)
}

// Set implements flag.Value.
func (r *rateFlag) Set(s string) error {
	l, err := parseRate(s)
	if err != nil {
		return err
	}
	r.limit = l
	return nil
}

// choiceFlag is a flag.Value that accepts one of a fixed set of words.
type choiceFlag struct {
	value   string
	choices []string
}

// newChoice returns a choiceFlag set to def, accepting choices.
func newChoice(def string, choices ...string) *choiceFlag {
	return &choiceFlag{value: def, choices: choices}
}

// String returns the current choice.
func (c *choiceFlag) String() string {
	if c == nil {
		return ""
	}
	return c.value
}

// Set implements flag.Value.
func (c *choiceFlag) Set(s string) error {
	if !slices.Contains(c.choices, s) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(c.choices, ", "))
	}
	c.value = s
	return nil
}

// envOr returns the environment variable name through getenv, or def when
// it is unset or empty.
func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
