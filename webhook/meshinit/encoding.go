package meshinit

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// The proxy's bootstrap travels in mesh-init's arguments, so in every
// injected pod: stored in etcd, sent to every watcher, and patched in by the
// API server on every creation. Compressed on its own it is ~2,000
// characters; compressed against a preset dictionary that is itself a
// bootstrap (DEFLATE's dictionary mode: the output refers back into text
// both sides already have) the built-in one is ~135 and a policy with
// custom circuit breakers ~230.
//
// A dictionary is frozen once released: its name is part of the wire format
// and a pod created today may run its init container again next year with
// the image named in its spec. When the built-in bootstrap drifts far from
// the newest dictionary (a test in webhook/inject watches the size), add the
// next one (d2.json) beside it and never change or drop the old ones: the
// injector encodes with the newest, mesh-init decodes every one it has. So
// mesh-init must be at least as new as the injector that renders its
// arguments; the chart keeps both images at the same version.

// d1 is the built-in bootstrap of the first release with dictionaries,
// compact JSON.
//
//go:embed dict/d1.json
var d1 []byte

type dictionary struct {
	name string
	data []byte
}

// dictionaries, oldest first; EncodeFile uses the last.
var dictionaries = []dictionary{{"d1", d1}}

// EncodeFile compresses and encodes a file's content for a command-line
// argument: "<dictionary>." then standard base64 of a zlib stream (DEFLATE
// at best compression with the newest dictionary as its preset
// dictionary). zlib rather than raw DEFLATE for its checks: the stream
// names its dictionary (DICTID) and ends with an Adler-32 of the content,
// so a damaged argument fails instead of writing another bootstrap. The
// same input always gives the same argument.
func EncodeFile(data []byte) string {
	d := dictionaries[len(dictionaries)-1]
	var b bytes.Buffer
	zw, _ := zlib.NewWriterLevelDict(&b, zlib.BestCompression, d.data)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return d.name + "." + base64.StdEncoding.EncodeToString(b.Bytes())
}

// maxDecodedFile bounds what DecodeFile inflates, so a bad argument cannot
// exhaust memory.
const maxDecodedFile = 4 << 20

// DecodeFile reverses EncodeFile. It also reads the format of injectors
// before dictionaries (plain base64 of gzip), so a newer mesh-init runs the
// pods an older injector made.
func DecodeFile(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var r io.Reader
	var rest *bytes.Reader
	if name, payload, ok := strings.Cut(s, "."); ok {
		if !dictionaryName.MatchString(name) {
			return nil, fmt.Errorf("not base64, and %q is not a dictionary name (d1, d2, ...)", name)
		}
		var dict []byte
		for _, d := range dictionaries {
			if d.name == name {
				dict = d.data
			}
		}
		if dict == nil {
			return nil, fmt.Errorf("compressed against dictionary %q, which this mesh-init does not have (it has %s): the mesh-init image is older than the injector that rendered the pod; use the image of the injector's version", name, dictionaryNames())
		}
		raw, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			return nil, fmt.Errorf("not base64: %w", err)
		}
		rest = bytes.NewReader(raw)
		zr, err := zlib.NewReaderDict(rest, dict)
		if err != nil {
			return nil, fmt.Errorf("not zlib data compressed against dictionary %s: %w", name, err)
		}
		r = zr
	} else {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("not base64: %w", err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("not gzip data: %w", err)
		}
		r = zr
	}
	data, err := io.ReadAll(io.LimitReader(r, maxDecodedFile+1))
	if err != nil {
		return nil, fmt.Errorf("not compressed data: %w", err)
	}
	if len(data) > maxDecodedFile {
		return nil, fmt.Errorf("over %d bytes once decompressed", maxDecodedFile)
	}
	if rest != nil && rest.Len() > 0 {
		return nil, errors.New("data after the end of the compressed stream")
	}
	return data, nil
}

// dictionaryName is the form of a dictionary's name in the argument.
var dictionaryName = regexp.MustCompile(`^d[0-9]+$`)

func dictionaryNames() string {
	names := make([]string, len(dictionaries))
	for i, d := range dictionaries {
		names[i] = d.name
	}
	return strings.Join(names, ", ")
}
