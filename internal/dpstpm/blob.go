package dpstpm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is what Parse returns, wrapped with the part at fault and
// its offset, for a blob that does not split into the six parts.
var ErrMalformed = errors.New("malformed activation blob")

// Blob is an activation blob split into its parts, each without its
// 2-byte size prefix: what the device gives TPM2_ActivateCredential and
// TPM2_Import (Part 3, 12.5 and 13.3).
type Blob struct {
	// CredentialBlob is the TPMS_ID_OBJECT inside the TPM2B_ID_OBJECT:
	// ActivateCredential's credentialBlob.
	CredentialBlob []byte
	// Secret is the credential's seed, encrypted to the EK:
	// ActivateCredential's secret.
	Secret []byte
	// Duplicate is the wrapped HMAC key (the TPM2B_PRIVATE's contents):
	// Import's duplicate.
	Duplicate []byte
	// InSymSeed is the outer wrapper's seed, encrypted to the SRK:
	// Import's inSymSeed.
	InSymSeed []byte
	// Public is the HMAC key's TPMT_PUBLIC: Import's and Load's
	// objectPublic.
	Public []byte
	// Data is the trailing TPM2B_DATA. The device SDKs read it as
	// encrypted URI data; Challenge leaves it empty.
	Data []byte
}

// parts names the blob's fields in order, for Parse's errors.
var parts = [...]string{
	"TPM2B_ID_OBJECT (credential blob)",
	"TPM2B_ENCRYPTED_SECRET (credential secret)",
	"TPM2B_PRIVATE (duplicate)",
	"TPM2B_ENCRYPTED_SECRET (import seed)",
	"TPM2B_PUBLIC (HMAC key)",
	"TPM2B_DATA",
}

func (b *Blob) fields() [6]*[]byte {
	return [6]*[]byte{&b.CredentialBlob, &b.Secret, &b.Duplicate, &b.InSymSeed, &b.Public, &b.Data}
}

// Parse splits an activation blob (dps-notes 4.4 item 3: TPM2B_ID_OBJECT,
// TPM2B_ENCRYPTED_SECRET, TPM2B_PRIVATE, TPM2B_ENCRYPTED_SECRET,
// TPM2B_PUBLIC, TPM2B_DATA, each a 2-byte big-endian size and that many
// bytes) into its parts. It checks the framing only: the TPM checks the
// contents. The first five parts must not be empty; the last may be. A
// blob cut short, or with bytes after the TPM2B_DATA, is ErrMalformed. The
// parts alias blob.
func Parse(blob []byte) (*Blob, error) {
	var b Blob
	off := 0
	for i, f := range b.fields() {
		if len(blob)-off < 2 {
			return nil, fmt.Errorf("%w: %s at offset %d: truncated: %d bytes left, want a 2-byte size", ErrMalformed, parts[i], off, len(blob)-off)
		}
		n := int(binary.BigEndian.Uint16(blob[off:]))
		if len(blob)-off-2 < n {
			return nil, fmt.Errorf("%w: %s at offset %d: truncated: size %d, %d bytes left", ErrMalformed, parts[i], off, n, len(blob)-off-2)
		}
		if n == 0 && i < len(parts)-1 {
			return nil, fmt.Errorf("%w: %s at offset %d: empty", ErrMalformed, parts[i], off)
		}
		*f = blob[off+2 : off+2+n : off+2+n]
		off += 2 + n
	}
	if off != len(blob) {
		return nil, fmt.Errorf("%w: %d bytes of trailing garbage after the TPM2B_DATA at offset %d", ErrMalformed, len(blob)-off, off)
	}
	return &b, nil
}

// Marshal joins the parts into a blob, each with its 2-byte size. A part
// longer than 65535 bytes cannot be framed: Marshal panics.
func (b *Blob) Marshal() []byte {
	n := 0
	for _, f := range b.fields() {
		n += 2 + len(*f)
	}
	out := make([]byte, 0, n)
	for i, f := range b.fields() {
		if len(*f) > 0xFFFF {
			panic(fmt.Sprintf("dpstpm: %s of %d bytes", parts[i], len(*f)))
		}
		out = appendTPM2B(out, *f)
	}
	return out
}

// appendTPM2B appends data with its 2-byte size prefix. The callers'
// data are at most a few hundred bytes.
func appendTPM2B(out, data []byte) []byte {
	out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
	return append(out, data...)
}
