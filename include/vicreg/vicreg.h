#pragma once
// Umbrella header of the vicreg library: options, functional API, modules, operators.

#include "vicreg/export.h"
#include "vicreg/functional.h"
#include "vicreg/loss.h"
#include "vicreg/options.h"
#include "vicreg/script.h"
#include "vicreg/vcreg.h"
#include "vicreg/version.h"
