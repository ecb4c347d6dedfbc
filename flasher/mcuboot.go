package flasher

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MCUboot image format (MCUboot docs, "Image format"): a 32-byte
// little-endian header, the body, then TLVs; the SHA256 TLV holds the hash
// of header and body that MCUmgr reports as the image's hash.
const (
	mcubootMagic       = 0x96f3b83d
	mcubootHeaderLen   = 32
	mcubootTLVMagic    = 0x6907
	mcubootTLVSHA256   = 0x10
	mcubootTLVInfoLen  = 4
	mcubootTLVEntryLen = 4
)

// ErrNotImage means data is not an MCUboot image.
var ErrNotImage = errors.New("not an MCUboot image")

// ImageVersion is an MCUboot image version.
type ImageVersion struct {
	Major, Minor uint8
	Revision     uint16
	Build        uint32
}

// String formats v as MCUmgr does: "1.2.3" or, with a build number,
// "1.2.3.4".
func (v ImageVersion) String() string {
	if v.Build == 0 {
		return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	}
	return fmt.Sprintf("%d.%d.%d.%d", v.Major, v.Minor, v.Revision, v.Build)
}

// ParseImageVersion parses "1.2.3" or "1.2.3.4".
func ParseImageVersion(s string) (ImageVersion, error) {
	bad := fmt.Errorf("image version %q: want MAJOR.MINOR.REVISION[.BUILD] (as 1.2.3)", s)
	parts := strings.Split(s, ".")
	if len(parts) != 3 && len(parts) != 4 {
		return ImageVersion{}, bad
	}
	var n [4]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, []int{8, 8, 16, 32}[i])
		if err != nil {
			return ImageVersion{}, bad
		}
		n[i] = v
	}
	return ImageVersion{uint8(n[0]), uint8(n[1]), uint16(n[2]), uint32(n[3])}, nil
}

// ImageInfo is what an MCUboot image says of itself.
type ImageInfo struct {
	Version ImageVersion
	Hash    []byte // the SHA256 TLV
	Size    int    // body length
}

// ParseImage reads the header and TLVs of an MCUboot image and checks that
// its SHA256 TLV matches header and body.
func ParseImage(img []byte) (ImageInfo, error) {
	if len(img) < mcubootHeaderLen || binary.LittleEndian.Uint32(img) != mcubootMagic {
		return ImageInfo{}, fmt.Errorf("%w: bad magic", ErrNotImage)
	}
	hdrSize := int(binary.LittleEndian.Uint16(img[8:]))
	protSize := int(binary.LittleEndian.Uint16(img[10:]))
	bodySize := int(binary.LittleEndian.Uint32(img[12:]))
	info := ImageInfo{
		Version: ImageVersion{img[20], img[21], binary.LittleEndian.Uint16(img[22:]), binary.LittleEndian.Uint32(img[24:])},
		Size:    bodySize,
	}
	end := hdrSize + bodySize
	if hdrSize < mcubootHeaderLen || end+protSize+mcubootTLVInfoLen > len(img) {
		return ImageInfo{}, fmt.Errorf("%w: header announces %d+%d bytes, file has %d", ErrNotImage, hdrSize, bodySize, len(img))
	}
	hashed := img[:end+protSize]
	tlv := img[end+protSize:]
	if binary.LittleEndian.Uint16(tlv) != mcubootTLVMagic {
		return ImageInfo{}, fmt.Errorf("%w: no TLV area", ErrNotImage)
	}
	total := int(binary.LittleEndian.Uint16(tlv[2:]))
	if total > len(tlv) {
		return ImageInfo{}, fmt.Errorf("%w: TLV area of %d bytes, file has %d", ErrNotImage, total, len(tlv))
	}
	for p := mcubootTLVInfoLen; p+mcubootTLVEntryLen <= total; {
		typ := binary.LittleEndian.Uint16(tlv[p:])
		n := int(binary.LittleEndian.Uint16(tlv[p+2:]))
		p += mcubootTLVEntryLen
		if p+n > total {
			break
		}
		if typ == mcubootTLVSHA256 && n == sha256.Size {
			info.Hash = append([]byte(nil), tlv[p:p+n]...)
		}
		p += n
	}
	if info.Hash == nil {
		return ImageInfo{}, fmt.Errorf("%w: no SHA256 TLV", ErrNotImage)
	}
	sum := sha256.Sum256(hashed)
	if !bytes.Equal(sum[:], info.Hash) {
		return ImageInfo{}, fmt.Errorf("%w: SHA256 TLV does not match the image", ErrNotImage)
	}
	return info, nil
}

// BuildImage wraps body in an unsigned MCUboot image of version v, with a
// SHA256 TLV: what imgtool makes without a key. For tests and for boards
// whose bootloader does not check signatures.
func BuildImage(v ImageVersion, body []byte) []byte {
	img := make([]byte, mcubootHeaderLen, mcubootHeaderLen+len(body)+mcubootTLVInfoLen+mcubootTLVEntryLen+sha256.Size)
	binary.LittleEndian.PutUint32(img[0:], mcubootMagic)
	binary.LittleEndian.PutUint16(img[8:], mcubootHeaderLen)
	binary.LittleEndian.PutUint32(img[12:], uint32(len(body)))
	img[20], img[21] = v.Major, v.Minor
	binary.LittleEndian.PutUint16(img[22:], v.Revision)
	binary.LittleEndian.PutUint32(img[24:], v.Build)
	img = append(img, body...)
	sum := sha256.Sum256(img)
	img = binary.LittleEndian.AppendUint16(img, mcubootTLVMagic)
	img = binary.LittleEndian.AppendUint16(img, mcubootTLVInfoLen+mcubootTLVEntryLen+sha256.Size)
	img = binary.LittleEndian.AppendUint16(img, mcubootTLVSHA256)
	img = binary.LittleEndian.AppendUint16(img, sha256.Size)
	return append(img, sum[:]...)
}
