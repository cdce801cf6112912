//go:build cgo && !noxla

package model

import (
	"github.com/gomlx/go-xla/compute/xla" // XLA/PJRT backend: "xla:cuda" or "xla:/path/to/plugin.so"
)

func init() {
	// flowerd never downloads PJRT plugins at run time: a GPU deployment
	// points GOMLX_BACKEND at a plugin that is already installed.
	xla.EnableAutoInstall(false)
}
