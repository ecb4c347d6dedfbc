package flasher

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Op is the operation of an SMP message (SMP Protocol Specification,
// "SMP header").
type Op uint8

// Operations.
const (
	OpRead     Op = 0
	OpReadRsp  Op = 1
	OpWrite    Op = 2
	OpWriteRsp Op = 3
)

// Response returns the response operation for a request operation.
func (o Op) Response() Op { return o | 1 }

// IsResponse reports whether o is a response operation.
func (o Op) IsResponse() bool { return o&1 == 1 }

// SMP protocol versions, carried in bits 3-4 of the header's first byte.
const (
	Version1 uint8 = 0
	Version2 uint8 = 1
)

// Management groups and their commands used by zerotouch.
const (
	GroupOS    uint16 = 0
	GroupImage uint16 = 1
	GroupFS    uint16 = 8
	// GroupProvisioning is zerotouch's provisioning group, the first
	// user-defined group (MGMT_GROUP_ID_PERUSER).
	GroupProvisioning uint16 = 64
)

// OS group commands.
const (
	CmdOSEcho   uint8 = 0
	CmdOSReset  uint8 = 5
	CmdOSParams uint8 = 6
	CmdOSInfo   uint8 = 7
)

// Image group commands.
const (
	CmdImageState  uint8 = 0
	CmdImageUpload uint8 = 1
	CmdImageErase  uint8 = 5
)

// File system group commands.
const (
	CmdFSFile   uint8 = 0
	CmdFSStatus uint8 = 1
	CmdFSHash   uint8 = 2
)

// Provisioning group commands (DESIGN.md, "Board protocol").
const (
	CmdProvIdentity uint8 = 0
	CmdProvTPM      uint8 = 1
	CmdProvKeygen   uint8 = 2
	CmdProvCommit   uint8 = 3
	// CmdProvRegister starts the board's DPS registration, as at its
	// first boot; CmdProvRegistration reads how it went.
	CmdProvRegister     uint8 = 4
	CmdProvRegistration uint8 = 5
)

// HeaderLen is the length of the SMP header.
const HeaderLen = 8

// ErrHeader is returned for a message too short to hold a header or whose
// header's length disagrees with its body.
var ErrHeader = errors.New("smp: bad header")

// Header is the 8-byte SMP header.
type Header struct {
	Version uint8 // Version1 or Version2
	Op      Op
	Flags   uint8
	Len     uint16 // body length in bytes
	Group   uint16
	Seq     uint8
	ID      uint8 // command within the group
}

// AppendBinary appends the encoded header to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, (h.Version&0x3)<<3|uint8(h.Op)&0x7, h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.Len)
	b = binary.BigEndian.AppendUint16(b, h.Group)
	return append(b, h.Seq, h.ID), nil
}

// ParseHeader decodes the header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: %d bytes", ErrHeader, len(b))
	}
	return Header{
		Version: b[0] >> 3 & 0x3,
		Op:      Op(b[0] & 0x7),
		Flags:   b[1],
		Len:     binary.BigEndian.Uint16(b[2:]),
		Group:   binary.BigEndian.Uint16(b[4:]),
		Seq:     b[6],
		ID:      b[7],
	}, nil
}

// String names the command, as "os.echo" or "group 70 cmd 3".
func (h Header) String() string { return CommandName(h.Group, h.ID) }

// Message is an SMP message: a header and its CBOR body.
type Message struct {
	Header
	Body []byte // CBOR, Header.Len bytes
}

// ParseMessage splits an SMP message into header and body and checks that
// the header's length matches the body.
func ParseMessage(b []byte) (Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Message{}, err
	}
	if int(h.Len) != len(b)-HeaderLen {
		return Message{}, fmt.Errorf("%w: header says %d body bytes, got %d", ErrHeader, h.Len, len(b)-HeaderLen)
	}
	return Message{Header: h, Body: b[HeaderLen:]}, nil
}

// EncodeMessage builds an SMP message from a header and a body value,
// encoding the body as CBOR and setting the header's length.
func EncodeMessage(h Header, body any) ([]byte, error) {
	cb, err := cborEnc.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s body: %w", h, err)
	}
	if len(cb) > 0xffff {
		return nil, fmt.Errorf("encode %s body: %d bytes is over the 16-bit limit", h, len(cb))
	}
	h.Len = uint16(len(cb))
	msg := make([]byte, 0, HeaderLen+len(cb))
	msg, _ = h.AppendBinary(msg)
	return append(msg, cb...), nil
}

// cborEnc encodes bodies with definite lengths and the shortest integer
// forms, as zcbor does on the boards.
var cborEnc = func() cbor.EncMode {
	em, err := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

// cborDec decodes bodies. Boards send definite or indefinite maps; unknown
// fields are ignored; limits keep a hostile body from exhausting memory.
var cborDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 4096,
		MaxMapPairs:      4096,
		DupMapKey:        cbor.DupMapKeyQuiet,
		IndefLength:      cbor.IndefLengthAllowed,
		DefaultMapType:   nil,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// DecodeBody decodes a CBOR body into v.
func DecodeBody(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	return cborDec.Unmarshal(body, v)
}

var commandNames = map[[2]uint16]string{
	{GroupOS, uint16(CmdOSEcho)}:                     "os.echo",
	{GroupOS, uint16(CmdOSReset)}:                    "os.reset",
	{GroupOS, uint16(CmdOSParams)}:                   "os.params",
	{GroupOS, uint16(CmdOSInfo)}:                     "os.info",
	{GroupImage, uint16(CmdImageState)}:              "image.state",
	{GroupImage, uint16(CmdImageUpload)}:             "image.upload",
	{GroupImage, uint16(CmdImageErase)}:              "image.erase",
	{GroupFS, uint16(CmdFSFile)}:                     "fs.file",
	{GroupFS, uint16(CmdFSStatus)}:                   "fs.status",
	{GroupFS, uint16(CmdFSHash)}:                     "fs.hash",
	{GroupProvisioning, uint16(CmdProvIdentity)}:     "prov.identity",
	{GroupProvisioning, uint16(CmdProvTPM)}:          "prov.tpm",
	{GroupProvisioning, uint16(CmdProvKeygen)}:       "prov.keygen",
	{GroupProvisioning, uint16(CmdProvCommit)}:       "prov.commit",
	{GroupProvisioning, uint16(CmdProvRegister)}:     "prov.register",
	{GroupProvisioning, uint16(CmdProvRegistration)}: "prov.registration",
}

// CommandName names a group's command for messages and logs.
func CommandName(group uint16, id uint8) string {
	if n, ok := commandNames[[2]uint16{group, uint16(id)}]; ok {
		return n
	}
	return fmt.Sprintf("group %d cmd %d", group, id)
}
