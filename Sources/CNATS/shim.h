#ifndef SENSOR_PIPELINE_CNATS_SHIM_H
#define SENSOR_PIPELINE_CNATS_SHIM_H

#include <nats/nats.h>

#endif
