package labels

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"github.com/skip2/go-qrcode"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Limits of the size argument of [Label.PNG], in pixels.
const (
	MinPNGSize = 96
	MaxPNGSize = 4096
)

// face is the font of the text under the QR code: fixed width, printable
// ASCII, every other character drawn as U+FFFD.
var face = basicfont.Face7x13

const (
	glyphAdvance = 7  // face.Advance
	glyphHeight  = 13 // face.Ascent + face.Descent
	glyphAscent  = 11 // face.Ascent
	lineGap      = 3

	// minModulePixels is the smallest module of the QR code, in pixels,
	// that a printed or shown label can be scanned from.
	minModulePixels = 2
)

// PNG returns the label as a PNG image size pixels wide: the QR code of
// [Label.Payload] (error correction level M, with its quiet zone) in a
// size x size square, and under it, as text, the serial number (twice as
// large), the registration ID, the model and the date, wrapped to the
// width (and cut short with "..." if very long; the QR code always holds
// the whole values). The text font has ASCII only: other characters show
// as a replacement mark. size must be within [MinPNGSize, MaxPNGSize].
//
// It returns an error wrapping [ErrInvalid] if the serial number or
// registration ID is blank, size is out of range, or the payload is too
// long for a QR code of size pixels (at least 2 pixels a module).
func (l Label) PNG(size int) ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	if size < MinPNGSize || size > MaxPNGSize {
		return nil, fmt.Errorf("label for board %q: %w: PNG size %d not within %d..%d", l.Serial, ErrInvalid, size, MinPNGSize, MaxPNGSize)
	}
	q, err := qrcode.New(l.Payload(), qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("label for board %q: %w: QR code: %w", l.Serial, ErrInvalid, err)
	}
	bitmap := q.Bitmap() // with the quiet zone
	modules := len(bitmap)
	unit := size / modules // pixels per module
	if unit < minModulePixels {
		return nil, fmt.Errorf("label for board %q: %w: QR code of %d modules does not fit in %d pixels at %d pixels a module", l.Serial, ErrInvalid, modules, size, minModulePixels)
	}

	scale := max(1, size/200) // of the text
	margin := 4 * scale
	serial, rid, model, date := l.textLines()
	type block struct {
		lines []string
		scale int
	}
	fit := func(text string, scale, maxLines int) block {
		perLine := (size - 2*margin) / (glyphAdvance * scale)
		if perLine < 8 && scale > 1 {
			return block{wrap(text, (size-2*margin)/glyphAdvance, maxLines), 1}
		}
		return block{wrap(text, perLine, maxLines), scale}
	}
	blocks := []block{fit(serial, 2*scale, 3), fit(rid, scale, 6)}
	if model != "" {
		blocks = append(blocks, fit(model, scale, 2))
	}
	if date != "" {
		blocks = append(blocks, fit(date, scale, 1))
	}
	height := size + margin
	for _, b := range blocks {
		height += len(b.lines) * (glyphHeight + lineGap) * b.scale
	}

	img := image.NewGray(image.Rect(0, 0, size, height))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	offset := (size - modules*unit) / 2
	for y, row := range bitmap {
		for x, black := range row {
			if black {
				fillBlack(img, offset+x*unit, offset+y*unit, unit)
			}
		}
	}
	y := size
	for _, b := range blocks {
		for _, line := range b.lines {
			drawText(img, margin, y, line, b.scale)
			y += (glyphHeight + lineGap) * b.scale
		}
	}

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("label for board %q: encode PNG: %w", l.Serial, err)
	}
	return buf.Bytes(), nil
}

// fillBlack paints the n x n square at (x, y) black.
func fillBlack(img *image.Gray, x, y, n int) {
	for dy := range n {
		for dx := range n {
			img.SetGray(x+dx, y+dy, color.Gray{})
		}
	}
}

// drawText draws s with its top left corner at (x, y), each pixel of the
// font a scale x scale square.
func drawText(img *image.Gray, x, y int, s string, scale int) {
	n := 0
	for range s {
		n++
	}
	mask := image.NewAlpha(image.Rect(0, 0, n*glyphAdvance, glyphHeight))
	d := font.Drawer{Dst: mask, Src: image.Opaque, Face: face, Dot: fixed.P(0, glyphAscent)}
	d.DrawString(s)
	b := mask.Bounds()
	for my := b.Min.Y; my < b.Max.Y; my++ {
		for mx := b.Min.X; mx < b.Max.X; mx++ {
			if mask.AlphaAt(mx, my).A >= 0x80 {
				fillBlack(img, x+mx*scale, y+my*scale, scale)
			}
		}
	}
}
