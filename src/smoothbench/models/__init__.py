"""The networks: ResNet v1 and v2 in Keras, and the pool sizes and depths the study checks."""
