package main

import (
	"fmt"

	"github.com/klauspost/compress/zstd"

	"stripe-webhooks/pkg/payload"
)

// levelRow is one corpus compressed at one level, per event.
type levelRow struct {
	corpus         string
	level          zstd.EncoderLevel
	dict           bool
	size           float64
	encode, decode float64 // Go CPU, µs
}

// weighLevels compresses each corpus at zstd's three fast levels, with and
// without pkg/payload's dictionary, and decodes it back.
func weighLevels(corpora []collection) ([]levelRow, error) {
	dict, _ := payload.Dictionary(payload.DictionaryID())
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDicts(dict))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	var rows []levelRow
	for _, c := range corpora {
		for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
			for _, withDict := range []bool{false, true} {
				opts := []zstd.EOption{zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(true)}
				if withDict {
					opts = append(opts, zstd.WithEncoderDict(dict))
				}
				row, err := weigh(c, dec, opts)
				if err != nil {
					return nil, fmt.Errorf("%s at %s: %w", c.name, level, err)
				}
				row.level, row.dict = level, withDict
				rows = append(rows, row)
			}
		}
	}
	return rows, nil
}

// weigh compresses c's deliveries with an encoder of opts and decodes them
// with dec.
func weigh(c collection, dec *zstd.Decoder, opts []zstd.EOption) (levelRow, error) {
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return levelRow{}, err
	}
	defer enc.Close()
	stored := make([][]byte, len(c.events))
	var size int
	began := goCPU()
	for i, e := range c.events {
		stored[i] = enc.EncodeAll(e, nil)
	}
	encoded := goCPU()
	for _, s := range stored {
		if _, err := dec.DecodeAll(s, nil); err != nil {
			return levelRow{}, err
		}
		size += len(s)
	}
	decoded := goCPU()
	return levelRow{corpus: c.name, size: float64(size) / float64(len(stored)),
		encode: perEvent(encoded-began, len(stored)), decode: perEvent(decoded-encoded, len(stored))}, nil
}
