package payload_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"stripe-webhooks/pkg/payload"
	"stripe-webhooks/pkg/payload/corpus"
	"stripe-webhooks/pkg/stripefixture"
)

// events are the samples, compact and indented, and a varied copy of each.
func events(t *testing.T) map[string][]byte {
	t.Helper()
	samples, err := corpus.Samples()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	out := map[string][]byte{}
	for i, s := range samples {
		var ind bytes.Buffer
		if err := json.Indent(&ind, s, "", "  "); err != nil {
			t.Fatal(err)
		}
		varied, err := corpus.Vary(ind.Bytes(), rng)
		if err != nil {
			t.Fatal(err)
		}
		typ := strings.Repeat("#", i) // samples of one type differ (bank, card)
		out["compact "+typ] = s
		out["indented "+typ] = ind.Bytes()
		out["varied "+typ] = varied
	}
	return out
}

func TestRoundTripIsByteForByte(t *testing.T) {
	t.Parallel()
	cases := events(t)
	big := bytes.Repeat(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}), 300) // ~1.2 MB, several blocks
	random := make([]byte, 70000)
	for i := range random {
		random[i] = byte(rand.N(256))
	}
	for name, raw := range map[string][]byte{
		"empty": {}, "one byte": {'{'}, "space before": []byte("\n  {\"id\":\"evt_1\"}\n"),
		"not JSON": []byte("hello"), "invalid UTF-8": {0xff, 0xfe, '{', 0x80}, "random bytes": random,
		"zstd magic inside": append([]byte{0x28, 0xb5, 0x2f, 0xfd}, "{}"...), "large": big,
	} {
		cases[name] = raw
	}
	for name, raw := range cases {
		stored := payload.Encode(raw)
		got, err := payload.Decode(stored)
		if err != nil {
			t.Errorf("%s: decode: %v", name, err)
			continue
		}
		if !bytes.Equal(got, raw) {
			t.Errorf("%s: decoded %d bytes differ from the %d encoded", name, len(got), len(raw))
		}
	}
}

func TestFrameNamesTheDictionaryAndCompresses(t *testing.T) {
	t.Parallel()
	if payload.DictionaryID() != 1 {
		t.Fatalf("encoder's dictionary is %d, want 1 (stripe-1.dict)", payload.DictionaryID())
	}
	for name, raw := range events(t) {
		stored := payload.Encode(raw)
		var h zstd.Header
		if err := h.Decode(stored); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h.DictionaryID != 1 || !h.HasCheckSum || h.FrameContentSize != uint64(len(raw)) {
			t.Errorf("%s: frame header %+v; want dictionary 1, a checksum, content size %d", name, h, len(raw))
		}
		// Even a varied event, whose values the dictionary cannot know,
		// shrinks to well under half.
		if len(stored)*2 > len(raw) {
			t.Errorf("%s: %d bytes stored for %d", name, len(stored), len(raw))
		}
	}
}

func TestPlainJSONPassesThroughDecode(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{"id":"evt_1","object":"event"}`, " \t\r\n{\"id\": \"evt_1\"}", "{"} {
		got, err := payload.Decode([]byte(raw))
		if err != nil || string(got) != raw {
			t.Errorf("Decode(%q) = %q, %v; want it unchanged", raw, got, err)
		}
	}
}

func TestFrameWithoutDictionaryDecodes(t *testing.T) {
	t.Parallel()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	raw := stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated"})
	got, err := payload.Decode(enc.EncodeAll(raw, nil))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Decode of a frame without dictionary or checksum = %d bytes, %v; want the %d encoded", len(got), err, len(raw))
	}
}

func TestUnknownDictionaryIsAnError(t *testing.T) {
	t.Parallel()
	dict, _ := payload.Dictionary(payload.DictionaryID())
	for _, id := range []uint32{2, 70000} {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(id, dict))
		if err != nil {
			t.Fatal(err)
		}
		stored := enc.EncodeAll(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}), nil)
		if _, err := payload.Decode(stored); !errors.Is(err, zstd.ErrUnknownDictionary) {
			t.Errorf("dictionary %d: Decode error %v, want zstd.ErrUnknownDictionary", id, err)
		}
	}
}

func TestDamagedOrForeignBytesAreErrors(t *testing.T) {
	t.Parallel()
	stored := payload.Encode(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}))
	for name, b := range map[string][]byte{
		"empty": {}, "spaces": []byte("  \n"), "JSON array": []byte(`[{"id":"evt_1"}]`), "text": []byte("evt_1"),
		"magic only": stored[:4], "truncated frame": stored[:len(stored)/2],
	} {
		if _, err := payload.Decode(b); err == nil {
			t.Errorf("%s: Decode returned no error", name)
		}
	}
	if _, err := payload.Decode([]byte("evt_1")); !errors.Is(err, payload.ErrUnknownFormat) {
		t.Errorf("Decode of text: %v, want ErrUnknownFormat", err)
	}
}

func TestDamagedFrameIsAnErrorNotOtherBytes(t *testing.T) {
	t.Parallel()
	raw, err := corpus.Vary(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}), rand.New(rand.NewPCG(5, 6)))
	if err != nil {
		t.Fatal(err)
	}
	stored := payload.Encode(raw)
	var silent int
	for i := range stored {
		for bit := range 8 {
			damaged := bytes.Clone(stored)
			damaged[i] ^= 1 << bit
			if got, err := payload.Decode(damaged); err == nil && !bytes.Equal(got, raw) {
				silent++
			}
		}
	}
	if silent > 0 {
		t.Errorf("%d of %d single-bit flips of a %d-byte frame decoded to other bytes without an error", silent, 8*len(stored), len(stored))
	}
}

func TestConcurrentEncodeAndDecode(t *testing.T) {
	t.Parallel()
	var raws [][]byte
	for _, raw := range events(t) {
		raws = append(raws, raw)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				raw := raws[(g+i)%len(raws)]
				got, err := payload.Decode(payload.Encode(raw))
				if err != nil || !bytes.Equal(got, raw) {
					errs <- errors.Join(errors.New("round trip differs"), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDictionaryIsSmallAndExported(t *testing.T) {
	t.Parallel()
	d, ok := payload.Dictionary(1)
	if !ok || len(d) == 0 || len(d) > 32<<10 {
		t.Fatalf("Dictionary(1): %d bytes, %v; want at most 32 KiB", len(d), ok)
	}
	if info, err := zstd.InspectDictionary(d); err != nil || info.ID() != 1 {
		t.Fatalf("Dictionary(1) is not zstd dictionary 1: %v", err)
	}
	if _, ok := payload.Dictionary(2); ok {
		t.Error("Dictionary(2) exists; only stripe-1.dict is embedded")
	}
}
