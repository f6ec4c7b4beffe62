#ifndef SENSOR_PIPELINE_CMOSQUITTO_SHIM_H
#define SENSOR_PIPELINE_CMOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#endif
