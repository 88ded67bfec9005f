// Package parsecli is `csirt parse`: it prints the events a log file would
// give, one JSON document per line, so that operators can check a log
// format before deploying an agent.
package parsecli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/collector/internal/parse"
	"github.com/csirt-toscana/platform/internal/event"
)

// MaxLine is the longest line read; longer lines are cut (and tagged).
const MaxLine = 1 << 20

const usage = `usage: csirt parse [--dataset D] [--host H] [--entity E] FILE...

Prints the events each FILE would give, one JSON event per line (JSONL).
FILE "-" reads standard input. Without --dataset the format is detected
from the file name and the content of each line.

Datasets: %s
`

// Main runs `csirt parse` with args (without the command name). It returns
// the exit code: 0 on success, 1 when a file cannot be read, 2 on bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(args, os.Stdin, stdout, stderr, time.Now)
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time) int {
	d := parse.New(parse.Options{Now: now})
	fs := flag.NewFlagSet("csirt parse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataset := fs.String("dataset", "", "parse every line with this dataset's parser")
	host := fs.String("host", "", "host.name of the events (default: from the records)")
	entity := fs.String("entity", "", "organization.id of the events")
	fs.Usage = func() { fmt.Fprintf(stderr, usage, strings.Join(d.Registry().Names(), ", ")) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *dataset != "" {
		if _, ok := d.Registry().Get(*dataset); !ok {
			fmt.Fprintf(stderr, "csirt parse: unknown dataset %q (known: %s)\n", *dataset, strings.Join(d.Registry().Names(), ", "))
			return 2
		}
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	code := 0
	for _, name := range fs.Args() {
		if err := parseFile(d, name, *dataset, *host, *entity, stdin, out, stderr, now); err != nil {
			fmt.Fprintf(stderr, "csirt parse: %v\n", err)
			code = 1
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "csirt parse: writing output: %v\n", err)
		return 1
	}
	return code
}

func parseFile(d *parse.Dispatcher, name, dataset, host, entity string, stdin io.Reader, out *bufio.Writer, stderr io.Writer, now func() time.Time) error {
	var r io.Reader
	source := name
	if name == "-" {
		r, source = stdin, ""
	} else {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		defer func() { _ = f.Close() }() // read-only: a close error loses nothing
		r = f
	}
	opts := Options{Dataset: dataset, Host: host, Entity: entity, Source: source, Now: now,
		OnLineError: func(line int, err error) { fmt.Fprintf(stderr, "csirt parse: %s:%d: %v\n", name, line, err) }}
	err := readEvents(d, r, opts, func(_ int, ev event.Event) error {
		b, err := ev.MarshalJSON()
		if err != nil {
			fmt.Fprintf(stderr, "csirt parse: %s: encoding event: %v\n", name, err)
			return nil
		}
		if _, err := out.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Options of ReadEvents.
type Options struct {
	Dataset string // force this dataset's parser; "" detects it per line
	Host    string // host.name of every event; "" keeps the records' own ("unknown" when none)
	Entity  string // organization.id of every event; "" leaves it unset
	Source  string // source hint, usually the file path; "" sniffs the content
	// Now gives event.ingested and the reference time for yearless
	// timestamps. Default time.Now.
	Now func() time.Time
	// OnLineError, if set, hears about lines a forced dataset did not
	// understand (they still give "<dataset>.unparsed" events).
	OnLineError func(line int, err error)
}

// ReadEvents parses raw log lines from r through the collector's parsers
// and calls emit with each event and the number of the line that completed
// it, in order (auditd records are joined, so an event may come after later
// lines; events completed only at the end of input get line 0). It is the entry point for other
// commands that read raw logs (e.g. hunting with rules over files). It
// stops at the first error from r or emit.
func ReadEvents(r io.Reader, opts Options, emit func(line int, ev event.Event) error) error {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return readEvents(parse.New(parse.Options{Now: opts.Now}), r, opts, emit)
}

func readEvents(d *parse.Dispatcher, r io.Reader, opts Options, emit func(line int, ev event.Event) error) error {
	st := d.NewStream(opts.Dataset)
	ingested := opts.Now().UTC()
	lineNo := 0
	write := func(evs []event.Event) error {
		for _, ev := range evs {
			ev["event.ingested"] = ingested
			if opts.Entity != "" {
				ev["organization.id"] = opts.Entity
			}
			if opts.Host != "" {
				ev["host.name"] = opts.Host
			} else if ev.String("host.name") == "" {
				ev["host.name"] = "unknown" // required; the record did not say
			}
			if _, ok := ev["agent.id"]; !ok {
				ev["agent.id"] = "csirt-parse"
			}
			ev["event.id"] = event.IDFromRaw([]byte(opts.Entity), []byte(ev.String("host.name")), []byte(ev.String("event.original")))
			if err := emit(lineNo, ev); err != nil {
				return err
			}
		}
		return nil
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			lineNo++
			evs, perr := st.Add(parse.Record{Raw: line, Source: opts.Source, Host: opts.Host})
			if perr != nil && opts.OnLineError != nil {
				opts.OnLineError(lineNo, perr)
			}
			if werr := write(evs); werr != nil {
				return werr
			}
		} else if err == nil {
			lineNo++ // an empty line gives no event
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading line %d: %w", lineNo+1, err)
		}
	}
	lineNo = 0
	return write(st.Flush())
}

// readLine reads one line without its newline, cutting it at MaxLine.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= MaxLine {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line = []byte(strings.TrimRight(string(line), "\r\n"))
		return line, err
	}
}
