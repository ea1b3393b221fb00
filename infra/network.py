"""Where runners live: your subnets, or a VPC with private subnets and NAT for egress.

Runners need outbound HTTPS (GitHub, package registries, container registries) and nothing
inbound: their security group has egress only and no ingress rule at all; operators reach
them through SSM Session Manager. A created VPC has one private and one public subnet per
zone, and a single NAT gateway in the first public subnet (one NAT keeps the cost flat; a zone
outage then stops egress until AWS recovers the zone, which a CI fleet can tolerate).
With `ssmVpcEndpoints`, interface endpoints for ssm, ssmmessages and ec2messages (and an S3
gateway endpoint in a created VPC) keep that traffic off the internet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from infra.config import FleetConfig

SSM_INTERFACE_SERVICES = ("ssm", "ssmmessages", "ec2messages")


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """Private and public subnet CIDRs: 16 equal blocks, privates first, publics from the 9th."""
    network = ipaddress.IPv4Network(vpc_cidr)
    blocks = list(network.subnets(new_prefix=network.prefixlen + 4))
    private = [str(block) for block in blocks[:zones]]
    public = [str(block) for block in blocks[8 : 8 + zones]]
    return private, public


class FleetNetworkArgs:
    """Inputs of FleetNetwork."""

    def __init__(
        self,
        *,
        config: FleetConfig,
        region: str,
        availability_zones: Sequence[str],
        tags: dict[str, str],
    ) -> None:
        self.config = config
        self.region = region
        self.availability_zones = list(availability_zones)
        self.tags = tags


class FleetNetwork(pulumi.ComponentResource):
    """Subnets, the egress-only runner security group and optional SSM endpoints."""

    def __init__(
        self, name: str, args: FleetNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("fleet:network:FleetNetwork", name, None, opts)
        self._name = name
        self._tags = args.tags
        cfg = args.config
        self.route_table_ids: list[pulumi.Output[str]] = []
        if cfg.creates_vpc:
            self._create_vpc(cfg, args.availability_zones[: cfg.availability_zone_count])
        else:
            self.vpc_id = aws.ec2.get_subnet_output(
                id=cfg.subnet_ids[0], opts=pulumi.InvokeOutputOptions(parent=self)
            ).vpc_id
            self.subnet_ids = pulumi.Output.from_input(list(cfg.subnet_ids))

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-runners",
            description="Runner instances: egress only, no inbound rules (access via SSM)",
            vpc_id=self.vpc_id,
            ingress=[],
            egress=[
                aws.ec2.SecurityGroupEgressArgs(
                    description="HTTPS and other outbound traffic of jobs",
                    protocol="-1",
                    from_port=0,
                    to_port=0,
                    cidr_blocks=["0.0.0.0/0"],
                )
            ],
            tags={**args.tags, "Name": f"{name}-runners"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.security_group_id = self.security_group.id
        self.endpoint_ids: list[pulumi.Output[str]] = []
        if cfg.ssm_vpc_endpoints:
            self._endpoints(args.region)
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "subnet_ids": self.subnet_ids,
                "security_group_id": self.security_group_id,
            }
        )

    def _create_vpc(self, cfg: FleetConfig, zones: Sequence[str]) -> None:
        name, tags = self._name, self._tags
        child = pulumi.ResourceOptions(parent=self)
        assert cfg.vpc_cidr is not None  # validated: a created VPC always has a CIDR
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # private DNS of interface endpoints needs both
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        self.vpc_id = vpc.id
        # The VPC's default group allows all traffic between its members; strip it (CIS 5.4).
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], tags=tags, opts=child
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-igw"}, opts=child
        )
        private_cidrs, public_cidrs = subnet_cidrs(cfg.vpc_cidr, len(zones))
        public_subnets, _ = self._tier(
            "public",
            vpc.id,
            aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id),
            zones,
            public_cidrs,
        )
        nat_ip = aws.ec2.Eip(
            f"{name}-nat", domain="vpc", tags={**tags, "Name": f"{name}-nat"}, opts=child
        )
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=nat_ip.id,
            subnet_id=public_subnets[0].id,
            tags={**tags, "Name": f"{name}-nat"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
        )
        private_subnets, private_routes = self._tier(
            "private",
            vpc.id,
            aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id),
            zones,
            private_cidrs,
        )
        self.subnet_ids = pulumi.Output.all(*[subnet.id for subnet in private_subnets])
        self.route_table_ids = [private_routes.id]

    def _tier(
        self,
        tier: str,
        vpc_id: pulumi.Output[str],
        default_route: aws.ec2.RouteTableRouteArgs,
        zones: Sequence[str],
        cidrs: Sequence[str],
    ) -> tuple[list[aws.ec2.Subnet], aws.ec2.RouteTable]:
        """One subnet per zone (`<name>-<tier>-<index>`), all on one route table with the
        given default route; returns the subnets and the table."""
        name, tags = self._name, self._tags
        child = pulumi.ResourceOptions(parent=self)
        routes = aws.ec2.RouteTable(
            f"{name}-{tier}",
            vpc_id=vpc_id,
            routes=[default_route],
            tags={**tags, "Name": f"{name}-{tier}"},
            opts=child,
        )
        subnets = []
        for index, (zone, cidr) in enumerate(zip(zones, cidrs, strict=True)):
            subnet = aws.ec2.Subnet(
                f"{name}-{tier}-{index}",
                vpc_id=vpc_id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-{tier}-{zone}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-{tier}-{index}",
                subnet_id=subnet.id,
                route_table_id=routes.id,
                opts=child,
            )
            subnets.append(subnet)
        return subnets, routes

    def _endpoints(self, region: str) -> None:
        name, tags = self._name, self._tags
        child = pulumi.ResourceOptions(parent=self)
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            description="SSM interface endpoints: HTTPS from runner instances only",
            vpc_id=self.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="HTTPS from runners",
                    protocol="tcp",
                    from_port=443,
                    to_port=443,
                    security_groups=[self.security_group.id],
                )
            ],
            egress=[],
            tags={**tags, "Name": f"{name}-endpoints"},
            opts=child,
        )
        for service in SSM_INTERFACE_SERVICES:
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=self.vpc_id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=self.subnet_ids,
                security_group_ids=[endpoint_sg.id],
                tags={**tags, "Name": f"{name}-{service}"},
                opts=child,
            )
            self.endpoint_ids.append(endpoint.id)
        # A gateway endpoint needs the subnets' route tables, known only for a created VPC.
        if self.route_table_ids:
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=self.vpc_id,
                service_name=f"com.amazonaws.{region}.s3",
                vpc_endpoint_type="Gateway",
                route_table_ids=self.route_table_ids,
                tags={**tags, "Name": f"{name}-s3"},
                opts=child,
            )
            self.endpoint_ids.append(endpoint.id)
