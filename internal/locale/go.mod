// This module stands in for github.com/jeandeaual/go-locale, which Fyne's
// lang package imports, through a replace directive in the main go.mod:
// it treats every spelling of the C locale as no locale, so that Fyne
// prints nothing under LANG=C.UTF-8.
module github.com/jeandeaual/go-locale

go 1.26.8

require golang.org/x/sys v0.49.0
