/* popek — the umbrella header: everything the library exports. */
#ifndef POPEK_POPEK_H
#define POPEK_POPEK_H

#define POPEK_VERSION "0.1.0"

#include "popek/status.h"
#include "popek/catalog.h"
#include "popek/image.h"
#include "popek/bzimage.h"
#include "popek/scan.h"
#include "popek/report.h"
#include "popek/patch.h"
#include "popek/flow.h"
#include "popek/trampoline.h"
#include "popek/elfgrow.h"
#include "popek/vcpu.h"
#include "popek/devices.h"
#include "popek/boot.h"

#endif
