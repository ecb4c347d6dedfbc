//go:build windows

package locale

import (
	"fmt"

	"golang.org/x/sys/windows"
)

func system() ([]string, error) {
	langs, err := windows.GetUserPreferredUILanguages(windows.MUI_LANGUAGE_NAME)
	if err != nil {
		return nil, fmt.Errorf("GetUserPreferredUILanguages: %w", err)
	}
	var tags []string
	for _, l := range langs {
		if l != "" {
			tags = append(tags, l)
		}
	}
	return tags, nil
}
