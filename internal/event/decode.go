package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// UnmarshalJSON reads a nested or dotted ECS document (or a mix of both) and
// flattens it. Values of registered fields are converted to their declared
// type; a value that cannot be is an error naming the field. Unregistered
// scalars are kept (numbers as int64 when integral, else float64); lists of
// scalars become []string; anything else unregistered is kept as its JSON
// text. Null values are dropped. When an object names a member twice, the
// last one wins.
//
// It streams the document through a JSON tokenizer and builds the flat
// event directly: keys of registered fields reuse the registry's strings and
// numbers are parsed straight to their field's type.
func (e *Event) UnmarshalJSON(data []byte) error {
	d := decoderPool.Get().(*decoder)
	out, err := d.decode(data)
	d.release()
	decoderPool.Put(d)
	if err != nil {
		return err
	}
	*e = out
	return nil
}

// Decode parses one JSON event; it does not validate it.
func Decode(data []byte) (Event, error) {
	var e Event
	err := e.UnmarshalJSON(data)
	return e, err
}

var decoderPool = sync.Pool{New: func() any { return new(decoder) }}

// decodeOptions: invalid UTF-8 is replaced by U+FFFD as encoding/json does;
// duplicate member names are detected (the default) so that they can be
// resolved as encoding/json resolves them (the last one wins).
var decodeOptions = []jsontext.Options{jsontext.AllowInvalidUTF8(true)}

// decoder holds the reusable state of one UnmarshalJSON call.
type decoder struct {
	dec    jsontext.Decoder
	in     bytes.Buffer   // wraps data so that dec reads it in place
	data   []byte         // the document being decoded
	name   []byte         // dotted name of the current member
	str    []byte         // scratch space for unescaped strings
	values map[string]any // recent keyword values, shared between events (sharedValue)
}

// fieldInfo is what the decoder needs to know of a registered field.
type fieldInfo struct {
	def FieldDef
	// intern: the field's values repeat from event to event (event.kind,
	// event.dataset, organization.id, host.name, ...), so the decoder
	// shares one string for each value instead of allocating it each time.
	intern bool
}

// decodeFields maps a registered field's name to what the decoder needs.
var decodeFields = func() map[string]*fieldInfo {
	m := make(map[string]*fieldInfo, len(registry))
	for _, f := range registry {
		// Ids are unique to their event; IP addresses are checked one by one.
		m[f.Name] = &fieldInfo{def: f, intern: f.Type == Keyword && f.Name != "event.id"}
	}
	return m
}()

const (
	maxSharedValues   = 1024 // values a decoder keeps; it forgets them all past this
	maxSharedValueLen = 64   // longer values are not kept
)

// sharedValue returns b as a string in an interface, shared with earlier
// events when the value was seen before. Sharing is safe: strings are
// immutable.
func (d *decoder) sharedValue(b []byte) any {
	if v, ok := d.values[string(b)]; ok {
		return v
	}
	s := string(b)
	var v any = s
	if len(b) <= maxSharedValueLen {
		if d.values == nil {
			d.values = make(map[string]any)
		} else if len(d.values) >= maxSharedValues {
			clear(d.values)
		}
		d.values[s] = v
	}
	return v
}

// errDuplicateNames says that an object of the document names a member
// twice; the document is then decoded again without the shadowed members.
var errDuplicateNames = errors.New("duplicate member names")

func (d *decoder) decode(data []byte) (Event, error) {
	out, err := d.run(data)
	if !errors.Is(err, errDuplicateNames) {
		return out, err
	}
	canon, err := dropShadowedMembers(data)
	if err != nil {
		return nil, fmt.Errorf("decoding event: %w", err)
	}
	out, err = d.run(canon)
	if errors.Is(err, errDuplicateNames) {
		// dropShadowedMembers left no duplicates; this cannot happen.
		return nil, fmt.Errorf("decoding event: an object names a member twice")
	}
	return out, err
}

// release drops the references to the last document.
func (d *decoder) release() {
	d.in = bytes.Buffer{}
	d.dec.Reset(&d.in)
	d.data = nil
}

// run decodes data in one pass. It returns errDuplicateNames when an object
// names a member twice.
func (d *decoder) run(data []byte) (Event, error) {
	d.data = data
	d.in = *bytes.NewBuffer(data)
	d.dec.Reset(&d.in, decodeOptions...)
	switch d.dec.PeekKind() {
	case '{':
	case 'n', '"', '0', 't', 'f', '[':
		return nil, fmt.Errorf("decoding event: not a JSON object")
	default:
		_, err := d.dec.ReadToken()
		return nil, d.syntax(err)
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return nil, d.syntax(err)
	}
	// About one field per 32 bytes of JSON in real events.
	out := make(Event, len(data)/32+4)
	d.name = d.name[:0]
	if err := d.object(out, 0, 0); err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return nil, err
		}
		// The document is read to its end first, so that a syntax error
		// or a duplicate name after the bad field takes precedence, as it
		// did when the whole document was parsed before its fields were
		// looked at.
		for d.dec.StackDepth() > 0 {
			if _, rerr := d.dec.ReadToken(); rerr != nil {
				return nil, d.syntax(rerr)
			}
		}
		if terr := d.trailing(); terr != nil {
			return nil, terr
		}
		return nil, err
	}
	if err := d.trailing(); err != nil {
		return nil, err
	}
	return out, nil
}

// syntax wraps an error of the tokenizer.
func (d *decoder) syntax(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, jsontext.ErrDuplicateName) {
		return errDuplicateNames
	}
	return fmt.Errorf("decoding event: %w", err)
}

// trailing refuses data after the object. As encoding/json's Decoder.More,
// it lets a closing '}' or ']' through.
func (d *decoder) trailing() error {
	rest := d.data[d.dec.InputOffset():]
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case ' ', '\t', '\r', '\n':
			continue
		case '}', ']':
			return nil
		}
		return fmt.Errorf("decoding event: trailing data after the JSON object")
	}
	return nil
}

// object reads the members of an object whose '{' was read. d.name[:prefix]
// is the object's dotted name; depth is its nesting level.
func (d *decoder) object(out Event, prefix, depth int) error {
	if depth > MaxNesting {
		return &FieldError{Field: string(d.name[:prefix]), Reason: fmt.Sprintf("nested deeper than %d levels", MaxNesting)}
	}
	for {
		if d.dec.PeekKind() == '}' {
			_, err := d.dec.ReadToken()
			return d.syntax(err)
		}
		raw, err := d.dec.ReadValue()
		if err != nil {
			return d.syntax(err)
		}
		d.name = d.name[:prefix]
		if prefix > 0 {
			d.name = append(d.name, '.')
		}
		d.name = appendUnquoted(d.name, raw)
		if err := d.member(out, depth); err != nil {
			return err
		}
	}
}

// member reads the value of the member named d.name into out.
func (d *decoder) member(out Event, depth int) error {
	kind := d.dec.PeekKind()
	field, registered := decodeFields[string(d.name)]
	switch kind {
	case 'n':
		_, err := d.dec.ReadToken()
		return d.syntax(err)
	case '{':
		if !registered {
			if _, err := d.dec.ReadToken(); err != nil {
				return d.syntax(err)
			}
			return d.object(out, len(d.name), depth+1)
		}
	case '"', '0', 't', 'f', '[':
	default:
		_, err := d.dec.ReadToken()
		return d.syntax(err)
	}
	var (
		key string
		v   any
		err error
	)
	if registered {
		key = field.def.Name
		v, err = d.registered(field, kind)
	} else {
		if _, dup := out[string(d.name)]; dup { // before allocating the key
			return d.givenTwice()
		}
		v, err = d.loose(kind)
		key = string(d.name)
	}
	if err != nil {
		return err
	}
	// Same-level duplicates were resolved before (errDuplicateNames), so a
	// name met again comes from both a nested and a dotted member. Checking
	// the map's length saves a lookup on the hot path.
	n := len(out)
	out[key] = v
	if len(out) == n {
		return d.givenTwice()
	}
	return nil
}

func (d *decoder) givenTwice() error {
	return &FieldError{Field: string(d.name), Reason: "given twice (nested and dotted)"}
}

// jsonKindName names a JSON kind in error messages.
func jsonKindName(kind jsontext.Kind) string {
	switch kind {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case '[':
		return "a list"
	case '{':
		return "an object"
	case 'n':
		return "null"
	}
	return "an invalid value"
}

// value reads the next scalar value. Strings are returned unescaped, in
// scratch space valid until the next call.
func (d *decoder) value(kind jsontext.Kind) ([]byte, error) {
	raw, err := d.dec.ReadValue()
	if err != nil {
		return nil, d.syntax(err)
	}
	if kind != '"' {
		return raw, nil
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return body, nil
	}
	d.str = appendUnquoted(d.str[:0], raw)
	return d.str, nil
}

// appendUnquoted appends the text of the JSON string raw (quoted, already
// checked by the tokenizer) to dst, with invalid UTF-8 and unpaired
// surrogate escapes replaced by U+FFFD as encoding/json does.
func appendUnquoted(dst, raw []byte) []byte {
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return append(dst, body...)
	}
	// The only errors left are the replaced invalid UTF-8 and surrogates.
	dst, _ = jsontext.AppendUnquote(dst, raw)
	return dst
}

// registered reads the value of a registered field and converts it to the
// field's type.
func (d *decoder) registered(field *fieldInfo, kind jsontext.Kind) (any, error) {
	def := &field.def
	if def.Array {
		if kind != '[' {
			s, err := d.scalarString(field, kind)
			if err != nil {
				return nil, err
			}
			return []string{s}, nil
		}
		if _, err := d.dec.ReadToken(); err != nil {
			return nil, d.syntax(err)
		}
		strs := make([]string, 0, 4)
		for {
			kind := d.dec.PeekKind()
			if kind == ']' {
				_, err := d.dec.ReadToken()
				return strs, d.syntax(err)
			}
			s, err := d.scalarString(field, kind)
			if err != nil {
				return nil, err
			}
			strs = append(strs, s)
		}
	}
	bad := func(reason string) error { return &FieldError{Field: def.Name, Reason: reason} }
	switch def.Type {
	case Keyword, Text, IP:
		if field.intern && kind == '"' {
			b, err := d.value(kind)
			if err != nil {
				return nil, err
			}
			return d.sharedValue(b), nil
		}
		return d.scalarString(field, kind)
	case Long:
		switch kind {
		case '0':
			b, err := d.value(kind)
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseInt(string(b), 10, 64)
			if err != nil {
				f, ferr := strconv.ParseFloat(string(b), 64)
				if ferr != nil || f != float64(int64(f)) {
					return nil, bad(fmt.Sprintf("%s is not an integer", b))
				}
				n = int64(f)
			}
			return n, nil
		case '"':
			b, err := d.value(kind)
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseInt(string(b), 10, 64)
			if err != nil {
				return nil, bad(fmt.Sprintf("%q is not an integer", b))
			}
			return n, nil
		}
		return nil, bad("want an integer, got " + jsonKindName(kind))
	case Double:
		switch kind {
		case '0', '"':
			b, err := d.value(kind)
			if err != nil {
				return nil, err
			}
			f, err := strconv.ParseFloat(string(b), 64)
			if err != nil {
				if kind == '"' {
					return nil, bad(fmt.Sprintf("%q is not a number", b))
				}
				return nil, bad(fmt.Sprintf("%s is not a number", b))
			}
			return f, nil
		}
		return nil, bad("want a number, got " + jsonKindName(kind))
	case Date:
		if kind != '"' {
			return nil, bad("want an RFC 3339 time string, got " + jsonKindName(kind))
		}
		b, err := d.value(kind)
		if err != nil {
			return nil, err
		}
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return nil, bad(fmt.Sprintf("%q is not an RFC 3339 time", b))
		}
		return t.UTC(), nil
	case Bool:
		if kind != 't' && kind != 'f' {
			return nil, bad("want true or false, got " + jsonKindName(kind))
		}
		if _, err := d.value(kind); err != nil {
			return nil, err
		}
		return kind == 't', nil
	}
	return nil, bad("unknown field type " + string(def.Type))
}

// scalarString reads a scalar of a string-typed field (keyword, text, ip,
// or an item of a list field): strings as they are, numbers as written,
// booleans as true or false.
func (d *decoder) scalarString(field *fieldInfo, kind jsontext.Kind) (string, error) {
	def := &field.def
	var s string
	switch kind {
	case '"', '0':
		if kind == '0' && def.Type == IP {
			return "", &FieldError{Field: def.Name, Reason: "want an IP address string, got a number"}
		}
		b, err := d.value(kind)
		if err != nil {
			return "", err
		}
		if field.intern && kind == '"' {
			s, _ = d.sharedValue(b).(string)
		} else {
			s = string(b)
		}
	case 't', 'f':
		if _, err := d.value(kind); err != nil {
			return "", err
		}
		s = strconv.FormatBool(kind == 't')
	default:
		return "", &FieldError{Field: def.Name, Reason: "want a string, got " + jsonKindName(kind)}
	}
	if def.Type == IP {
		if err := checkScalar(*def, s); err != nil {
			return "", err
		}
	}
	return s, nil
}

// loose reads the value of an unregistered field (not an object, which is
// flattened, nor null, which is dropped).
func (d *decoder) loose(kind jsontext.Kind) (any, error) {
	switch kind {
	case '"':
		b, err := d.value(kind)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	case 't', 'f':
		if _, err := d.value(kind); err != nil {
			return nil, err
		}
		return kind == 't', nil
	case '0':
		b, err := d.value(kind)
		if err != nil {
			return nil, err
		}
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return nil, &FieldError{Field: string(d.name), Reason: fmt.Sprintf("%s is not a number", b)}
		}
		return f, nil
	case '[':
		return d.looseList()
	}
	return nil, &FieldError{Field: string(d.name), Reason: "unsupported JSON value " + jsonKindName(kind)}
}

// looseList reads the list value of an unregistered field: a list of
// scalars gives a []string (nulls dropped); a list holding an object or a
// list is kept as its compact JSON text, as encoding/json writes it.
func (d *decoder) looseList() (any, error) {
	start := d.dec.InputOffset() // just after the member name
	if _, err := d.dec.ReadToken(); err != nil {
		return nil, d.syntax(err)
	}
	strs := make([]string, 0, 4)
	for {
		kind := d.dec.PeekKind()
		switch kind {
		case ']':
			_, err := d.dec.ReadToken()
			return strs, d.syntax(err)
		case 'n':
			if _, err := d.dec.ReadToken(); err != nil {
				return nil, d.syntax(err)
			}
		case '"', '0':
			b, err := d.value(kind)
			if err != nil {
				return nil, err
			}
			strs = append(strs, string(b))
		case 't', 'f':
			if _, err := d.value(kind); err != nil {
				return nil, err
			}
			strs = append(strs, strconv.FormatBool(kind == 't'))
		case '{', '[':
			return d.looseListText(start)
		default:
			_, err := d.dec.ReadToken()
			return nil, d.syntax(err)
		}
	}
}

// looseListText reads the rest of a list that started after offset start
// and returns the list's text, written as encoding/json writes the generic
// value it decodes to (keys sorted, numbers as written, HTML characters
// escaped). It is the slow path for a rare shape.
func (d *decoder) looseListText(start int64) (any, error) {
	for d.dec.PeekKind() != ']' {
		if err := d.dec.SkipValue(); err != nil {
			return nil, d.syntax(err)
		}
	}
	if _, err := d.dec.ReadToken(); err != nil {
		return nil, d.syntax(err)
	}
	raw := d.data[start:d.dec.InputOffset()]
	raw = raw[bytes.IndexByte(raw, '['):]
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var list any
	if err := dec.Decode(&list); err != nil {
		return nil, &FieldError{Field: string(d.name), Reason: err.Error()}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, &FieldError{Field: string(d.name), Reason: err.Error()}
	}
	return string(b), nil
}

// dropShadowedMembers rewrites the first JSON value of data without the
// members that a later member of the same name replaces (as encoding/json
// decoding into a map keeps the last one), so that the streaming decoder
// can read it in one pass. Bytes after the value are kept as they are.
func dropShadowedMembers(data []byte) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(data),
		jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
	out, err := appendLastMembers(make([]byte, 0, len(data)), dec)
	if err != nil {
		return nil, err
	}
	return append(out, data[dec.InputOffset():]...), nil
}

func appendLastMembers(dst []byte, dec *jsontext.Decoder) ([]byte, error) {
	switch dec.PeekKind() {
	case '{':
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		type member struct {
			name  string
			value []byte
		}
		var members []member
		index := map[string]int{}
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			name := tok.String()
			value, err := appendLastMembers(nil, dec)
			if err != nil {
				return nil, err
			}
			if i, ok := index[name]; ok {
				members[i].value = value
				continue
			}
			index[name] = len(members)
			members = append(members, member{name, value})
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		dst = append(dst, '{')
		for i, m := range members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst, _ = jsontext.AppendQuote(dst, m.name) // names are valid UTF-8 by now
			dst = append(dst, ':')
			dst = append(dst, m.value...)
		}
		return append(dst, '}'), nil
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		dst = append(dst, '[')
		for i := 0; dec.PeekKind() != ']'; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendLastMembers(dst, dec); err != nil {
				return nil, err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		return append(dst, ']'), nil
	}
	v, err := dec.ReadValue()
	if err != nil {
		return nil, err
	}
	return append(dst, v...), nil
}
