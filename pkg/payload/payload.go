package payload

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

//go:embed stripe-*.dict
var dictFiles embed.FS

// Level is the zstd level Encode compresses at. With the dictionary, the
// default level saves about 1% of the bytes of the fastest at more than
// twice its CPU, and the better level 2% at six times it (measured by
// ingest/cmd/payloadcost).
const Level = zstd.SpeedFastest

// maxDecoded bounds what one stored payload may decode to, whatever its
// frame header claims: 64 MiB, far above any delivery the ingest accepts
// (WEBHOOK_MAX_BODY_BYTES, 1 MiB by default).
const maxDecoded = 64 << 20

// zstdMagic opens every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// ErrUnknownFormat is returned by Decode for bytes that are neither a zstd
// frame nor a JSON object.
var ErrUnknownFormat = errors.New("payload: neither a zstd frame nor a JSON object")

// codec is the shared encoder and decoder, built once from the embedded
// dictionaries.
type codec struct {
	enc    *zstd.Encoder
	dec    *zstd.Decoder
	dictID uint32
	dicts  map[uint32][]byte
}

var shared = sync.OnceValue(func() *codec {
	c, err := newCodec()
	if err != nil {
		// The dictionaries are embedded and checked by the tests: only a
		// broken build gets here.
		panic(err)
	}
	return c
})

func newCodec() (*codec, error) {
	dicts, err := loadDicts()
	if err != nil {
		return nil, err
	}
	newest := slices.Max(slices.Collect(maps.Keys(dicts)))
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(Level), zstd.WithEncoderDict(dicts[newest]),
		zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true), zstd.WithEncoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("payload: encoder: %w", err)
	}
	all := make([][]byte, 0, len(dicts))
	for _, d := range dicts {
		all = append(all, d)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDicts(all...), zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(maxDecoded))
	if err != nil {
		return nil, fmt.Errorf("payload: decoder: %w", err)
	}
	return &codec{enc: enc, dec: dec, dictID: newest, dicts: dicts}, nil
}

// loadDicts reads every embedded stripe-<id>.dict and checks that the
// dictionary inside carries the id of its name.
func loadDicts() (map[uint32][]byte, error) {
	names, err := fs.Glob(dictFiles, "stripe-*.dict")
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("payload: no embedded dictionary: %v", err)
	}
	dicts := make(map[uint32][]byte, len(names))
	for _, name := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "stripe-"), ".dict"), 10, 32)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("payload: %s: not named stripe-<id>.dict", name)
		}
		b, err := dictFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		d, err := zstd.InspectDictionary(b)
		if err != nil {
			return nil, fmt.Errorf("payload: %s: %w", name, err)
		}
		if d.ID() != uint32(id) {
			return nil, fmt.Errorf("payload: %s holds dictionary %d", name, d.ID())
		}
		dicts[uint32(id)] = b
	}
	return dicts, nil
}

// Encode returns raw, byte for byte, as one zstd frame compressed with the
// newest embedded dictionary, whose id the frame carries. Any bytes are
// accepted, none too (an empty frame). It is safe for concurrent use.
func Encode(raw []byte) []byte {
	return shared().enc.EncodeAll(raw, nil)
}

// Decode returns the delivery body a stored payload holds: a zstd frame
// (with any embedded dictionary, or none) decompressed, or a JSON object
// (a row stored before this format: its first byte other than JSON space
// is '{') as it is. A frame whose dictionary is unknown, a corrupt frame
// and anything else are errors. It is safe for concurrent use.
func Decode(stored []byte) ([]byte, error) {
	if bytes.HasPrefix(stored, zstdMagic) {
		out, err := shared().dec.DecodeAll(stored, nil)
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		return out, nil
	}
	if trimmed := bytes.TrimLeft(stored, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		return stored, nil
	}
	return nil, ErrUnknownFormat
}

// DictionaryID is the id of the dictionary Encode compresses with.
func DictionaryID() uint32 { return shared().dictID }

// Dictionary returns the embedded dictionary of id, in zstd's dictionary
// format, as the zstd command line takes it (zstd -d -D FILE), and
// whether there is one.
func Dictionary(id uint32) ([]byte, bool) {
	d, ok := shared().dicts[id]
	return slices.Clone(d), ok
}
