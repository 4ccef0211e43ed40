package psi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Kind names a protocol message.
type Kind byte

const (
	// KindItems carries a party's blinded points and encrypted payloads.
	KindItems Kind = 1 + iota
	// KindReblinded is the helper's reblinding of the matcher's items.
	KindReblinded
	// KindCells carries the summed (and noised) cells.
	KindCells
	// KindPartials carries partial decryptions of the cells.
	KindPartials
)

func (k Kind) String() string {
	switch k {
	case KindItems:
		return "items"
	case KindReblinded:
		return "reblinded"
	case KindCells:
		return "cells"
	case KindPartials:
		return "partials"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Message is one protocol message. Its binary form is fixed: a header,
// then points, then ciphertexts (two points each); nothing in it is
// parsed beyond lengths and canonical point encodings.
type Message struct {
	Kind    Kind
	Session [16]byte
	// Width is the payload cells per point (KindItems, KindReblinded:
	// 0 when the sender contributes no payload) or the number of cells
	// (KindCells, KindPartials).
	Width  int
	Points [][pointSize]byte
	Cipher []Ciphertext
}

const magic = "APSI\x01"

const headerSize = len(magic) + 1 + 16 + 2 + 4

// MaxWidth bounds the payload cells.
const MaxWidth = 1 << 12

// Size is the encoded length.
func (m *Message) Size() int { return headerSize + len(m.Points)*pointSize + len(m.Cipher)*2*pointSize }

// MarshalBinary encodes the message.
func (m *Message) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, m.Size())
	b = append(b, magic...)
	b = append(b, byte(m.Kind))
	b = append(b, m.Session[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Width))
	b = putU32(b, len(m.Points))
	for _, p := range m.Points {
		b = append(b, p[:]...)
	}
	for _, c := range m.Cipher {
		r, cc := encode(c.R), encode(c.C)
		b = append(b, r[:]...)
		b = append(b, cc[:]...)
	}
	return b, nil
}

// ErrMessage is a malformed message.
var ErrMessage = errors.New("malformed protocol message")

// Decode parses a message of the expected kind and session, with at most
// maxPoints points; every point must be a canonical, non-identity
// encoding. It checks the shape the kind implies.
func Decode(b []byte, kind Kind, session [16]byte, maxPoints int) (*Message, error) {
	if len(b) < headerSize || string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: bad header", ErrMessage)
	}
	m := &Message{Kind: Kind(b[len(magic)])}
	off := len(magic) + 1
	copy(m.Session[:], b[off:off+16])
	off += 16
	m.Width = int(binary.BigEndian.Uint16(b[off:]))
	off += 2
	n := int(binary.BigEndian.Uint32(b[off:]))
	off += 4
	switch {
	case m.Kind != kind:
		return nil, fmt.Errorf("%w: a %s message where %s was expected", ErrMessage, m.Kind, kind)
	case m.Session != session:
		return nil, fmt.Errorf("%w: the message belongs to another session", ErrMessage)
	case m.Width > MaxWidth:
		return nil, fmt.Errorf("%w: width %d exceeds %d", ErrMessage, m.Width, MaxWidth)
	case n > maxPoints:
		return nil, fmt.Errorf("%w: %d points exceed the limit %d", ErrMessage, n, maxPoints)
	}
	var ciphers int
	switch kind {
	case KindItems, KindReblinded:
		ciphers = n * m.Width
	case KindCells:
		if n != 0 {
			return nil, fmt.Errorf("%w: cells carry no points", ErrMessage)
		}
		ciphers = m.Width
	case KindPartials:
		if n != m.Width {
			return nil, fmt.Errorf("%w: %d partials for %d cells", ErrMessage, n, m.Width)
		}
	}
	if len(b)-off != n*pointSize+ciphers*2*pointSize {
		return nil, fmt.Errorf("%w: length does not match its header", ErrMessage)
	}
	m.Points = make([][pointSize]byte, n)
	for i := range m.Points {
		copy(m.Points[i][:], b[off:])
		off += pointSize
	}
	// Points are decoded where they are used (in parallel); ciphertexts
	// here, since every one is used.
	m.Cipher = make([]Ciphertext, ciphers)
	var err error
	var once sync.Once
	parallel(ciphers, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var r, c [pointSize]byte
			at := off + i*2*pointSize
			copy(r[:], b[at:])
			copy(c[:], b[at+pointSize:])
			R, e1 := decodeAny(r)
			C, e2 := decodeAny(c)
			if e1 != nil || e2 != nil {
				once.Do(func() { err = errPoint })
				return
			}
			m.Cipher[i] = Ciphertext{R: R, C: C}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	return m, nil
}

// decodeAny accepts the identity too: a ciphertext component of an
// encryption of 0 with r = 0 never occurs, but C = m·G + r·PK may be
// anything.
func decodeAny(p [pointSize]byte) (e groupElement, err error) {
	e = grp.NewElement()
	if e.UnmarshalBinary(p[:]) != nil {
		return nil, errPoint
	}
	return e, nil
}
