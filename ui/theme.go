package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
)

// Text sizes of the station's theme. A bench operator glances at the
// screen from two metres: Fyne's default 14 is for a desk.
const (
	textSize       = 20
	headingSize    = 30
	subHeadingSize = 24
	captionSize    = 16
)

// stationTheme is a theme with text large enough to read from the bench.
// Colours, icons and fonts are the wrapped theme's.
type stationTheme struct{ fyne.Theme }

// Theme returns base with the station's text sizes.
func Theme(base fyne.Theme) fyne.Theme {
	if t, ok := base.(stationTheme); ok {
		return t
	}
	return stationTheme{base}
}

func (t stationTheme) Size(n fyne.ThemeSizeName) float32 {
	switch n {
	case theme.SizeNameText:
		return textSize
	case theme.SizeNameHeadingText:
		return headingSize
	case theme.SizeNameSubHeadingText:
		return subHeadingSize
	case theme.SizeNameCaptionText:
		return captionSize
	}
	return t.Theme.Size(n)
}
