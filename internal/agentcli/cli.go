package agentcli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// The command-line conventions below are shared by every command of this
// repository (tunnel agent, tunnel http, tunnel gateway, tunnel-agent), so
// that all of them report mistakes and exit alike.

// UsageError is a mistake in the command line: Exit returns status 2 for
// it. Printed says the flag package has already shown it, with the usage,
// so that Exit does not repeat it.
type UsageError struct {
	Err     error
	Printed bool
}

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError for a problem found after parsing.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// NewFlagSet returns a flag set for a subcommand that reports errors
// (instead of exiting) and prints usage, then the flags, to output.
func NewFlagSet(name, usage string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// ParseFlags parses args into fs. It returns flag.ErrHelp for -h, and a
// UsageError, already printed by fs, for any other parse failure.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &UsageError{Err: err, Printed: true}
}

// Exit reports err on stderr as the command name (such as "tunnel agent")
// and returns the process's exit status: 0 for nil and for flag.ErrHelp
// (-h), 2 for a UsageError, 1 for any other error.
func Exit(stderr io.Writer, name string, err error) int {
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !ue.Printed {
			fmt.Fprintf(stderr, "%s: %v\nRun \"%s -h\" for the flags.\n", name, err, name)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}
