#pragma once
// Umbrella header of the vicreg library: options, functional API, modules.
// The TorchScript helpers (vicreg::script) are in "vicreg/script.h", which pulls in the
// TorchScript frontend headers: include it where you use them.

#include "vicreg/cpu.h"
#include "vicreg/export.h"
#include "vicreg/functional.h"
#include "vicreg/loss.h"
#include "vicreg/options.h"
#include "vicreg/vcreg.h"
#include "vicreg/version.h"
